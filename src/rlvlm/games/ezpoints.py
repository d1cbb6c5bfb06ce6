"""EZPoints: make 12 from two cards with ``+`` and ``*``."""

from __future__ import annotations

from dataclasses import dataclass

from rlvlm.games.cards import RANKS, Card, card_with_value, random_suit
from rlvlm.games.points import NUMBERS, PointsEnv, PointsTask


@dataclass(frozen=True)
class EZPointsTask(PointsTask):
    game = "ezpoints"
    title = "EZPoints"
    action_names = (*NUMBERS, "+", "*", "=")
    aliases = {"plus": 10, "times": 11, "equals": 12}
    target = 12
    num_cards = 2
    operators = "+*"
    parens = False
    formula_limit = 5
    card_width = 0.3


class EZPointsEnv(PointsEnv):
    """Build a formula that equals 12 from the values of two cards, with ``+`` and ``*``.

    ## Actions
    ``0``..``9`` append the numbers 1..10, ``10`` appends ``+``, ``11`` appends ``*`` and
    ``12`` is ``=``.

    ## Observation
    An RGB image of the two cards and the formula so far, shape (image_size, image_size, 3).
    J, Q and K count as 10 and A as 1. ``info["description"]`` says the same in text.

    ## Start
    The first card has a rank from 2 to K. If its value divides 12, the second card's value
    is 12 / value or 12 - value with equal chance, else 12 - value; then the two cards swap
    places with probability 1/2. Every deal is solvable.
    ``reset(options={"cards": ["QH", "2S"]})`` pins the cards instead.

    ## Rewards
    A number that is not the value of an unused card is invalid: -1, and the formula grows by
    a blank that counts toward the length limit and is otherwise ignored. ``=`` gives +10 if
    the formula equals 12 exactly and uses both cards, else -1. Other steps give 0.

    ## Episode end
    Terminated by ``=``. A step taken when the formula already has more than 5 entries
    gives -1 and truncates. Juxtaposed numbers (2 then 6) are a malformed formula, not 26.

    ## Version history
    v0: the rules of the EZPoints game of Zhai et al. (2024), with exact arithmetic.
    """

    task = EZPointsTask()

    def deal(self) -> tuple[Card, Card]:
        rng = self.np_random
        first = Card(RANKS[rng.integers(1, len(RANKS))], random_suit(rng))
        value = first.value
        if 12 % value == 0 and rng.random() < 0.5:
            second = card_with_value(12 // value, rng)
        else:
            second = card_with_value(12 - value, rng)
        return (second, first) if rng.random() < 0.5 else (first, second)
