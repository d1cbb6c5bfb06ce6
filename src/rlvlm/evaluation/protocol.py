"""What every player is: a ``Policy`` replies to ``Turn``s. The text players of
``rlvlm.evaluation.policies`` and ``api`` follow it, and the episode loops rely on nothing else."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import NamedTuple, Protocol

import numpy as np

from rlvlm.games.base import Task


class Turn(NamedTuple):
    """What a policy is shown at one step of one episode."""

    image: np.ndarray
    prompt: str
    task: Task
    view: Hashable  # the visible state, for the game's own expert


class Policy(Protocol):
    name: str
    #: The picture size the policy wants, or None for any.
    image_size: int | None

    def replies(self, turns: Sequence[Turn]) -> list[str]:
        """One reply per turn; a batch holds turns of different episodes."""
        ...
