"""Points24: make 24 from four cards with ``+ - * / ( )``."""

from __future__ import annotations

from dataclasses import dataclass

from rlvlm.games.cards import Card, random_card
from rlvlm.games.points import NUMBERS, PointsEnv, PointsTask


@dataclass(frozen=True)
class Points24Task(PointsTask):
    game = "points24"
    title = "Points24"
    action_names = (*NUMBERS, "+", "-", "*", "/", "(", ")", "=")
    aliases = {"plus": 10, "minus": 11, "times": 12, "divide": 13, "equals": 16}
    target = 24
    num_cards = 4
    operators = "+-*/"
    parens = True
    formula_limit = 20
    card_width = 0.2


class Points24Env(PointsEnv):
    """Build a formula that equals 24 from the values of four cards.

    ## Actions
    ``0``..``9`` append the numbers 1..10, ``10``..``15`` append ``+ - * / ( )`` and ``16``
    is ``=``.

    ## Observation
    An RGB image of the four cards and the formula so far, shape (image_size, image_size, 3).
    J, Q and K count as 10 and A as 1. ``info["description"]`` says the same in text.

    ## Start
    Four cards of uniformly random rank and suit. Not every deal can make 24: the share that
    can is the ceiling of any agent's success rate.
    ``reset(options={"cards": ["QH", "3S", "10D", "AC"]})`` pins the cards instead.

    ## Rewards
    A number that is not the value of an unused card is invalid: -1, and the formula grows by
    a blank that counts toward the length limit and is otherwise ignored. ``=`` gives +10 if
    the formula equals 24 exactly (rational arithmetic: 8 / (3 - 8 / 3) is 24) and uses all
    four cards, else -1. A malformed formula, such as two numbers or two operators in a row,
    or a division by zero, is simply not 24. Other steps give 0.

    ## Episode end
    Terminated by ``=``. A step taken when the formula already has more than 20 entries
    gives -1 and truncates.

    ## Version history
    v0: the rules of the Points24 game of Zhai et al. (2024), with exact arithmetic and no
    reading of juxtaposed numbers as one number.
    """

    task = Points24Task()

    def deal(self) -> tuple[Card, ...]:
        return tuple(random_card(self.np_random) for _ in range(4))
