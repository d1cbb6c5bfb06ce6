"""What every game shares: the task contract (prompt, parser, expert) and the env base class.

A game is split in two. The *env* holds the state and applies the rules. The *task* is a
frozen, hashable object of pure functions of the env's ``view()``, the part of the state the
picture shows: how to draw it, describe it, label it, prompt for it, read a reply to it, and
what the expert would do and say. Keeping the task pure lets demonstrations, evaluation and
the trainer use it without an env.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlvlm.games import render
from rlvlm.games.cards import RANKS, SUITS, Card
from rlvlm.games.parsing import ParsedAction, parse_action


class Label(NamedTuple):
    """One categorical fact the picture shows, e.g. ``Label("target", 3, 6)``."""

    name: str
    value: int
    num_classes: int


def card_labels(slot: str, card: Card | None) -> list[Label]:
    """Rank (0 = no card, then A..K) and suit (0 = no card, then C D H S) of a card slot."""
    rank = 0 if card is None else RANKS.index(card.rank) + 1
    suit = 0 if card is None else SUITS.index(card.suit) + 1
    return [
        Label(f"{slot}_rank", rank, len(RANKS) + 1),
        Label(f"{slot}_suit", suit, len(SUITS) + 1),
    ]


@dataclass(frozen=True)
class Task(ABC):
    """A game's prompt, reply parser, expert and picture, as pure functions of a view."""

    game: ClassVar[str]
    #: The canonical text of each action, indexed by action id; empty for a game whose
    #: actions change from state to state (see ``actions``).
    action_names: ClassVar[tuple[str, ...]]
    #: Other words a model may use for an action, lower case.
    aliases: ClassVar[Mapping[str, int]] = {}

    @cached_property
    def names(self) -> dict[str, int]:
        return {name.lower(): index for index, name in enumerate(self.action_names)} | dict(
            self.aliases
        )

    def actions(self, view: Any) -> tuple[str, ...]:
        """The text of each action id in ``view``: the fixed ``action_names`` by default."""
        return self.action_names

    def parse(self, reply: str, view: Any = None) -> ParsedAction:
        """The action a reply names, or why it names none. Games with a fixed action set
        read it without the view."""
        return parse_action(reply, self.names)

    @abstractmethod
    def draw(self, view: Any, size: int) -> np.ndarray:
        """The picture of ``view``, an RGB uint8 array of shape (size, size, 3)."""

    @abstractmethod
    def describe(self, view: Any) -> str:
        """A short text of what the picture shows."""

    @abstractmethod
    def labels(self, view: Any) -> list[Label]:
        """What the picture shows, as categorical labels."""

    @abstractmethod
    def prompt(self, view: Any, cot: bool = True) -> str:
        """The text the agent gets beside the picture."""

    @abstractmethod
    def legal_actions(self, view: Any) -> tuple[int, ...]:
        """The actions the rules accept in this view."""

    @abstractmethod
    def oracle_action(self, view: Any) -> int:
        """What the game's expert does."""

    @abstractmethod
    def thoughts(self, view: Any, action: int) -> dict[str, Any]:
        """The chain-of-thought fields of a truthful reply that goes on to take ``action``."""

    def reply(self, view: Any, action: int, cot: bool = True) -> str:
        """The reply an expert would write: the thought fields, then the action, as JSON."""
        fields = self.thoughts(view, action) if cot else {}
        return json.dumps(fields | {"action": self.actions(view)[action]}, ensure_ascii=False)

    def feedback(self, view: Any) -> str:
        """What a prompt's history recalls of a past state besides the action taken there:
        nothing for a picture game, whose picture alone shows its state (its description
        would tell the model what it should read); ALFWorld's engine text."""
        return ""

    def stated_facts(self, reply: str) -> dict[str, str]:
        """The facts about the picture that a reply's thoughts state, by name, in a canonical
        text; a fact the reply does not state is left out. None by default."""
        return {}

    def check_thoughts(self, reply: str, view: Any) -> dict[str, bool]:
        """Whether ``reply`` states each fact of the picture truly; a fact it leaves out or
        garbles is not true. Empty for a game whose thoughts state no facts.

        The truth is what the expert's truthful reply states, read the same way.
        """
        truth = self.stated_facts(self.reply(view, self.legal_actions(view)[0]))
        stated = self.stated_facts(reply)
        return {name: stated.get(name) == value for name, value in truth.items()}


def succeeded(episode_return: float, won: bool | None = None) -> bool:
    """Whether an episode succeeded: won, where the game says (ALFWorld, whose goal-condition
    term can give a lost episode a positive return); otherwise a return above 0 (the paper's).
    Evaluation, rollouts and demonstrations all count with this."""
    return bool(won) if won is not None else episode_return > 0


REPLY_FORMAT_START = "Your response should be"


def reply_format(fields: Sequence[tuple[str, str]]) -> str:
    """The prompt's description of the JSON reply, one ``"key": hint`` line per field."""
    body = ",\n".join(f'  "{key}": {hint}' for key, hint in fields)
    return f"{REPLY_FORMAT_START} a valid JSON object in the following format:\n{{\n{body}\n}}"


def with_history(prompt: str, history: Sequence[tuple[str, str]]) -> str:
    """``prompt`` with the episode's last steps, (what was observed, the action taken) oldest
    first, recalled just before its reply format.

    >>> steps = [("", "+"), ("You see a pen.", "take pen")]
    >>> print(with_history("Go.\\nYour response should be JSON.", steps))
    Go.
    Your last 2 steps, oldest first:
    1. Action: "+"
    2. Observation: You see a pen. Action: "take pen"
    Your response should be JSON.
    """
    if not history:
        return prompt
    recalled = "".join(
        f"{i}. {f'Observation: {observed} ' if observed else ''}"
        f"Action: {json.dumps(action, ensure_ascii=False)}\n"
        for i, (observed, action) in enumerate(history, 1)
    )
    title = (
        "Your last step:" if len(history) == 1 else f"Your last {len(history)} steps, oldest first:"
    )
    head, marker, tail = prompt.rpartition(REPLY_FORMAT_START)
    block = f"{title}\n{recalled}"
    return head + block + marker + tail if marker else f"{prompt}\n{block}"


def action_choices(names: Sequence[str]) -> str:
    return " or ".join(f'"{name}"' for name in names)


@render.cached(maxsize=64)  # all of NumberLine; a few MB, not a copy of every deal seen
def frame(task: Task, view: Hashable, size: int) -> np.ndarray:
    """The picture of a view, kept read-only for the next time it is shown."""
    image = task.draw(view, size)
    image.flags.writeable = False
    return image


class GameEnv(gym.Env[np.ndarray, np.int64], ABC):
    """Base of the picture games: image observations and a text description in ``info``."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 2}
    #: The most steps an episode can last under the game's rules.
    max_steps: ClassVar[int]
    task: Task

    def __init__(self, image_size: int = 300, render_mode: str | None = None):
        if not isinstance(image_size, int) or image_size < 32:
            raise ValueError(f"image_size must be an integer of at least 32, got {image_size!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.image_size = image_size
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)

    @abstractmethod
    def view(self) -> Hashable:
        """What the picture shows now: everything the agent may know, nothing hidden."""

    def legal_actions(self) -> tuple[int, ...]:
        return self.task.legal_actions(self.view())

    def render(self) -> np.ndarray | None:
        return self.observe() if self.render_mode == "rgb_array" else None

    def observe(self) -> np.ndarray:
        """The current picture, as a fresh array."""
        return frame(self.task, self.view(), self.image_size).copy()

    def _info(self, **extra: Any) -> dict[str, Any]:
        return {"description": self.task.describe(self.view()), **extra}
