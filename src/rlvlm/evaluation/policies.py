"""Policies that play from text: each turn they get the picture and prompt, and reply."""

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

    def replies(self, turns: Sequence[Turn]) -> list[str]:
        """One reply per turn; a batch holds turns of different episodes."""
        ...


class OraclePolicy:
    """The game's expert, replying with its chain of thought as a model would."""

    name = "oracle"

    def replies(self, turns: Sequence[Turn]) -> list[str]:
        return [turn.task.reply(turn.view, turn.task.oracle_action(turn.view)) for turn in turns]


class RandomPolicy:
    """Uniformly random actions out of the whole action space, in well-formed replies."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def replies(self, turns: Sequence[Turn]) -> list[str]:
        return [
            turn.task.reply(turn.view, int(self.rng.integers(len(turn.task.action_names))))
            for turn in turns
        ]


POLICIES = {"oracle": OraclePolicy, "random": RandomPolicy}


def load_policy(spec: str, seed: int = 0) -> Policy:
    """The policy named by ``spec``: ``oracle`` or ``random``."""
    if spec == "oracle":
        return OraclePolicy()
    if spec == "random":
        return RandomPolicy(seed)
    raise ValueError(f"unknown policy {spec!r}; choose from {', '.join(POLICIES)}")
