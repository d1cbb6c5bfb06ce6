"""NumberLine: move the current number to the target, one step at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

from rlvlm.games import render
from rlvlm.games.base import GameEnv, Label, Task, action_choices, reply_format
from rlvlm.games.parsing import first_value

MINUS, PLUS = 0, 1


class NumberLineView(NamedTuple):
    target: int
    current: int


@dataclass(frozen=True)
class NumberLineTask(Task):
    game = "numberline"
    action_names = ("-", "+")
    aliases = {"minus": MINUS, "subtract": MINUS, "plus": PLUS, "add": PLUS}
    max_position: int = 5

    def draw(self, view: NumberLineView, size: int) -> np.ndarray:
        image = render.canvas(size, render.WHITE)
        text_size = round(size * 0.13)
        for text, y in ((f"Target: {view.target}", 0.35), (f"Current: {view.current}", 0.65)):
            render.write(image, text, size / 2, size * y, text_size, render.BLACK, render.WHITE)
        return image

    def describe(self, view: NumberLineView) -> str:
        return f"Target: {view.target}. Current: {view.current}."

    def labels(self, view: NumberLineView) -> list[Label]:
        classes = self.max_position + 1
        return [Label("target", view.target, classes), Label("current", view.current, classes)]

    def prompt(self, view: NumberLineView, cot: bool = True) -> str:
        intro = (
            "You are playing a game called number line. The image shows a target number and a "
            f"current number, each an integer from 0 to {self.max_position}. Your goal is to "
            'make the current number equal to the target: "+" adds one to the current number '
            'and "-" subtracts one.\n'
        )
        fields = (
            [
                ("current number", '"x"'),
                ("target number", '"x"'),
                (
                    "thoughts",
                    '"{first read both numbers, then say which way the current number '
                    'must move to reach the target}"',
                ),
            ]
            if cot
            else []
        )
        return intro + reply_format([*fields, ("action", action_choices(self.action_names))])

    def legal_actions(self, view: NumberLineView) -> tuple[int, ...]:
        return (MINUS, PLUS)

    def oracle_action(self, view: NumberLineView) -> int:
        return PLUS if view.current < view.target else MINUS

    def thoughts(self, view: NumberLineView, action: int) -> dict[str, Any]:
        current, target = view.current, view.target
        if current == target:
            fact = f"{current} equals the target {target}"
        else:
            fact = f"{current} is {'below' if current < target else 'above'} the target {target}"
        if current != target and action == self.oracle_action(view):
            move = "add one" if action == PLUS else "subtract one"
            thought = f"{fact}, so I {move} to move closer."
        else:
            thought = f"{fact}; I choose '{self.action_names[action]}'."
        return {"current number": current, "target number": target, "thoughts": thought}

    def stated_facts(self, reply: str) -> dict[str, str]:
        fields = ("current number", "target number")
        return {key: value for key in fields if (value := first_value(reply, key)) is not None}


class NumberLineEnv(GameEnv):
    """Move the current number to the target.

    ## Actions
    ``0`` is ``-`` (subtract one, not below 0) and ``1`` is ``+`` (add one, not above
    ``max_position``).

    ## Observation
    An RGB image of ``Target: t`` and ``Current: c``, shape (image_size, image_size, 3).
    ``info["description"]`` says the same in text.

    ## Start
    Target and current are drawn uniformly from ``0..max_position``. When they are equal,
    the target becomes ``(target + 1) % max_position``, the rule of the original game
    (kept so that results compare; it makes the target ``max_position`` a little rarer).
    ``reset(options={"target": 3, "current": 5})`` pins the start instead.

    ## Rewards
    +1 when the move reaches the target, 0 when it brings the number closer, -1 when the
    distance did not shrink (including a move blocked at either end).

    ## Episode end
    Terminated when current equals target; truncated after ``2 * max_position`` steps.

    ## Version history
    v0: the rules of the NumberLine game of Zhai et al. (2024).
    """

    def __init__(
        self, max_position: int = 5, image_size: int = 300, render_mode: str | None = None
    ):
        super().__init__(image_size, render_mode)
        if not isinstance(max_position, int) or max_position < 2:
            raise ValueError(f"max_position must be an integer of at least 2, got {max_position!r}")
        self.task = NumberLineTask(max_position)
        self.max_steps = 2 * max_position
        self.action_space = spaces.Discrete(2)
        self.target = self.current = self.steps = 0

    def view(self) -> NumberLineView:
        return NumberLineView(self.target, self.current)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        top = self.task.max_position
        if options:
            self.target, self.current = _pinned_start(options, top)
        else:
            self.target, self.current = (int(x) for x in self.np_random.integers(0, top + 1, 2))
            if self.target == self.current:
                self.target = (self.target + 1) % top
        self.steps = 0
        return self.observe(), self._info()

    def step(self, action: int):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0 ('-') or 1 ('+'), got {action!r}")
        action = int(action)  # numpy integers would leak into formulas and infos
        before = abs(self.current - self.target)
        move = 1 if action == PLUS else -1
        self.current = min(max(self.current + move, 0), self.task.max_position)
        self.steps += 1
        terminated = self.current == self.target
        closer = abs(self.current - self.target) < before
        reward = 1.0 if terminated else 0.0 if closer else -1.0
        truncated = not terminated and self.steps >= self.max_steps
        return self.observe(), reward, terminated, truncated, self._info(invalid_action=False)


def _pinned_start(options: dict[str, Any], top: int) -> tuple[int, int]:
    if set(options) != {"target", "current"}:
        raise ValueError(
            f"NumberLine options are {{'target': t, 'current': c}}, got keys {sorted(options)}"
        )
    values = options["target"], options["current"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= top for v in values):
        raise ValueError(f"target and current must be integers in 0..{top}, got {values}")
    if values[0] == values[1]:
        raise ValueError(f"target and current must differ (an episode starts unsolved): {values}")
    return values
