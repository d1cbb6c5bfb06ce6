"""Playing cards: parsing, values, and dealing from an environment's seeded generator."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

RANKS = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
SUITS = ("C", "D", "H", "S")
SUIT_SYMBOLS = {"C": "♣", "D": "♦", "H": "♥", "S": "♠"}
RED_SUITS = frozenset("DH")


class Card(NamedTuple):
    """A card as rank and suit codes, e.g. ``Card("Q", "H")``; ``str`` gives ``"QH"``."""

    rank: str
    suit: str

    @property
    def value(self) -> int:
        """The game value: A is 1, number cards their number, J Q K are 10.

        >>> Card("K", "S").value, Card("A", "H").value, Card("7", "C").value
        (10, 1, 7)
        """
        return min(RANKS.index(self.rank) + 1, 10)

    @property
    def is_red(self) -> bool:
        return self.suit in RED_SUITS

    def __str__(self) -> str:
        return self.rank + self.suit


def parse_card(code: object) -> Card:
    """Parse a card code: rank (A 2..10 J Q K) then suit (C D H S), case-insensitive.

    >>> parse_card("10d")
    Card(rank='10', suit='D')
    >>> parse_card("1H")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: bad card '1H': expected a rank in A 2 3 4 5 6 7 8 9 10 J Q K followed by ...
    """
    if isinstance(code, Card):
        return code
    text = str(code).strip().upper()
    rank, suit = text[:-1], text[-1:]
    if rank not in RANKS or suit not in SUITS:
        raise ValueError(
            f"bad card {code!r}: expected a rank in {' '.join(RANKS)} followed by a suit in "
            f"{' '.join(SUITS)}"
        )
    return Card(rank, suit)


def parse_cards(codes: object, count: int | None = None, what: str = "cards") -> tuple[Card, ...]:
    """Parse a list of card codes, checking how many there are when ``count`` is given."""
    if isinstance(codes, str) or not isinstance(codes, Iterable):
        raise ValueError(f"{what} must be a list of card codes such as ['QH', '3S'], got {codes!r}")
    cards = tuple(parse_card(code) for code in codes)
    if count is not None and len(cards) != count:
        raise ValueError(f"{what} must hold {count} cards, got {len(cards)}")
    return cards


def random_suit(rng: np.random.Generator) -> str:
    return SUITS[rng.integers(len(SUITS))]


def random_card(rng: np.random.Generator) -> Card:
    """A card from an infinite deck: every rank and suit equally likely."""
    return Card(RANKS[rng.integers(len(RANKS))], random_suit(rng))


def card_with_value(value: int, rng: np.random.Generator) -> Card:
    """A random card whose game value is ``value`` (10 is any of 10 J Q K)."""
    ranks = RANKS[9:] if value == 10 else (RANKS[value - 1],)
    return Card(ranks[rng.integers(len(ranks))], random_suit(rng))


def hand_total(cards: Iterable[Card]) -> tuple[int, bool]:
    """Blackjack total and whether an ace counts as 11 in it (a "soft" hand).

    >>> hand_total([Card("A", "S"), Card("6", "H")])
    (17, True)
    >>> hand_total([Card("A", "S"), Card("6", "H"), Card("K", "D")])
    (17, False)
    """
    values = [card.value for card in cards]
    total = sum(values)
    if 1 in values and total + 10 <= 21:
        return total + 10, True
    return total, False
