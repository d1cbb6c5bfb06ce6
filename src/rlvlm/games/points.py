"""The formula card games: build a formula over the cards' values that makes the target.

EZPoints and Points24 differ only in their numbers (cards, operators, target, length limit)
and in how they deal, so both are this module's env and task with other constants.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
from gymnasium import spaces

from rlvlm.games import render
from rlvlm.games.base import GameEnv, Label, Task, card_labels, reply_format
from rlvlm.games.cards import Card, parse_cards
from rlvlm.games.formula import Token, complete, evaluate, format_formula
from rlvlm.games.parsing import first_value

NUMBERS = tuple(str(n) for n in range(1, 11))
TOKENS_PER_LINE = 6


class PointsView(NamedTuple):
    cards: tuple[Card, ...]
    #: The formula's visible entries; the blanks that invalid numbers leave are not shown.
    formula: tuple[Token, ...]


@dataclass(frozen=True)
class PointsTask(Task):
    """Reach ``target`` with a formula that uses every card's value exactly once."""

    title: ClassVar[str]
    target: ClassVar[int]
    num_cards: ClassVar[int]
    operators: ClassVar[str]  # the binary operators, e.g. "+*"
    parens: ClassVar[bool]
    formula_limit: ClassVar[int]  # a step taken with more entries than this truncates
    card_width: ClassVar[float]  # as a fraction of the image side

    @property
    def equals(self) -> int:
        return len(self.action_names) - 1

    def token(self, action: int) -> Token | None:
        """The formula entry an action appends; None for ``=``."""
        if action < len(NUMBERS):
            return action + 1
        return None if action == self.equals else self.action_names[action]

    def action_of(self, token: Token) -> int:
        return token - 1 if isinstance(token, int) else self.action_names.index(token)

    def unused_values(self, view: PointsView) -> list[int]:
        left = Counter(card.value for card in view.cards)
        left.subtract(t for t in view.formula if isinstance(t, int))
        return sorted(left.elements())

    def solution(self, view: PointsView) -> tuple[Token, ...] | None:
        """A winning formula that extends the current one, if there is any."""
        values = [card.value for card in view.cards]
        return complete(values, self.target, self.operators, self.parens, view.formula)

    def is_win(self, formula: tuple[Token, ...], cards: tuple[Card, ...]) -> bool:
        numbers = sorted(t for t in formula if isinstance(t, int))
        return numbers == sorted(card.value for card in cards) and evaluate(formula) == self.target

    def draw(self, view: PointsView, size: int) -> np.ndarray:
        image = render.canvas(size, render.FELT)
        width = round(size * self.card_width)
        gap = (size - self.num_cards * width) / (self.num_cards + 1)
        top = round(size * 0.05)
        for i, card in enumerate(view.cards):
            render.paste(
                image, render.card_sprite(card, width), round(gap + i * (width + gap)), top
            )
        y = top + render.card_height(width) + size * 0.09
        text_size = round(size * 0.08)
        render.write(image, "Formula:", size / 2, y, text_size, render.WHITE, render.FELT)
        entries = [str(t) for t in view.formula]
        for start in range(0, len(entries), TOKENS_PER_LINE):
            y += size * 0.11
            line = " ".join(entries[start : start + TOKENS_PER_LINE])
            render.write(image, line, size / 2, y, text_size, render.WHITE, render.FELT)
        return image

    def describe(self, view: PointsView) -> str:
        cards = " ".join(str(card) for card in view.cards)
        return f"Cards: {cards}. Formula: {format_formula(view.formula) or '(empty)'}."

    def labels(self, view: PointsView) -> list[Label]:
        labels = [
            label for i, card in enumerate(view.cards) for label in card_labels(f"card{i}", card)
        ]
        entry_classes = len(self.action_names)  # 0 = empty, then every action but "="
        for i in range(self.formula_limit + 1):
            entry = 0 if i >= len(view.formula) else self.action_of(view.formula[i]) + 1
            labels.append(Label(f"formula{i}", entry, entry_classes))
        return labels

    def prompt(self, view: PointsView, cot: bool = True) -> str:
        operators = self.action_names[len(NUMBERS) : self.equals]
        ops = ", ".join(f"'{name}'" for name in operators)
        intro = (
            f"You are playing a game called {self.title}. The image shows {self.num_cards} playing "
            f"cards. Build a formula that equals {self.target}, using the value of each card "
            "exactly once: J, Q and K count as 10 and A counts as 1. Each step appends one "
            f"number (1 to 10) or one of {ops} to the formula; '=' ends the game and checks it.\n"
            f"The current formula is: {format_formula(view.formula) or '(empty)'}\n"
        )
        fields = (
            [
                ("cards", "[x, y, ...]"),
                ("current formula", '"the formula so far"'),
                (
                    "thoughts",
                    '"{say whether the current formula is complete, and what to append '
                    "to make it equal " + str(self.target) + '}"',
                ),
            ]
            if cot
            else []
        )
        choices = '"1" to "10", ' + ", ".join(f'"{name}"' for name in operators) + ' or "="'
        return intro + reply_format([*fields, ("action", choices)])

    def legal_actions(self, view: PointsView) -> tuple[int, ...]:
        numbers = sorted({self.action_of(value) for value in self.unused_values(view)})
        return (*numbers, *range(len(NUMBERS), len(self.action_names)))

    def oracle_action(self, view: PointsView) -> int:
        solution = self.solution(view)
        if solution is None or len(solution) == len(view.formula):
            return self.equals  # done, or nothing can win any more: end the episode
        return self.action_of(solution[len(view.formula)])

    def thoughts(self, view: PointsView, action: int) -> dict[str, Any]:
        formula = format_formula(view.formula)
        if not formula:
            state = "The current formula is empty."
        elif self.is_win(view.formula, view.cards):
            state = f"'{formula}' is complete and equals {self.target}."
        else:
            state = f"'{formula}' is incomplete."
        token = self.token(action)
        step = "I press '='." if token is None else f"I append '{token}'."
        if action == self.oracle_action(view):
            solution = self.solution(view)
            if solution is None:
                step = f"No formula from here makes {self.target}, so I press '=' to end."
            elif token is not None:
                step = f"Since '{format_formula(solution)} = {self.target}', I append '{token}'."
        return {
            "cards": [card.value for card in view.cards],
            "current formula": formula,
            "thoughts": f"{state} {step}",
        }

    def stated_facts(self, reply: str) -> dict[str, str]:
        facts = {}
        if (cards := first_value(reply, "cards")) is not None:
            facts["cards"] = " ".join(re.findall(r"\d+", cards))
        if (formula := first_value(reply, "current formula")) is not None:
            facts["current formula"] = "".join(formula.split())
        return facts


class PointsEnv(GameEnv):
    """Base env of the formula games; subclasses set ``task`` and ``deal``."""

    task: PointsTask

    def __init__(self, image_size: int = 300, render_mode: str | None = None):
        super().__init__(image_size, render_mode)
        self.action_space = spaces.Discrete(len(self.task.action_names))
        self.max_steps = self.task.formula_limit + 2
        self.cards: tuple[Card, ...] = ()
        self.formula: list[Token | None] = []  # None marks a blank left by an invalid number

    def deal(self) -> tuple[Card, ...]:
        raise NotImplementedError

    def view(self) -> PointsView:
        return PointsView(self.cards, tuple(t for t in self.formula if t is not None))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options:
            if set(options) != {"cards"}:
                raise ValueError(f"options are {{'cards': [...]}}, got keys {sorted(options)}")
            self.cards = parse_cards(options["cards"], self.task.num_cards)
        else:
            self.cards = self.deal()
        self.formula = []
        return self.observe(), self._info()

    def step(self, action: int):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in 0..{self.action_space.n - 1}, got {action!r}")
        action = int(action)  # numpy integers would leak into formulas and infos
        if len(self.formula) > self.task.formula_limit:
            return self.observe(), -1.0, False, True, self._info(invalid_action=False)
        view = self.view()
        token = self.task.token(action)
        if token is None:
            reward = 10.0 if self.task.is_win(view.formula, self.cards) else -1.0
            return self.observe(), reward, True, False, self._info(invalid_action=False)
        invalid = isinstance(token, int) and token not in self.task.unused_values(view)
        self.formula.append(None if invalid else token)
        reward = -1.0 if invalid else 0.0
        return self.observe(), reward, False, False, self._info(invalid_action=invalid)
