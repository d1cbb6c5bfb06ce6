"""Blackjack with Gymnasium's Blackjack-v1 rules, seen as a picture of the table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

from rlvlm.games import render
from rlvlm.games.base import GameEnv, Label, Task, action_choices, card_labels, reply_format
from rlvlm.games.cards import Card, hand_total, parse_cards, random_card
from rlvlm.games.parsing import first_value

STAND, HIT = 0, 1
#: Player card slots that get labels; longer hands (nine or more cards) are vanishingly rare.
LABELLED_PLAYER_CARDS = 8


class BlackjackView(NamedTuple):
    dealer_up: Card
    player: tuple[Card, ...]


def basic_strategy(total: int, soft: bool, dealer_up: Card) -> int:
    """The best fixed hit-or-stand rule for an infinite deck when the dealer stands on 17.

    >>> basic_strategy(16, False, Card("10", "S")), basic_strategy(13, False, Card("5", "H"))
    (1, 0)
    """
    up = 11 if dealer_up.rank == "A" else dealer_up.value
    if soft:
        stand = total >= 19 or (total == 18 and up <= 8)
    else:
        stand = total >= 17 or (total >= 13 and up <= 6) or (total == 12 and 4 <= up <= 6)
    return STAND if stand else HIT


@dataclass(frozen=True)
class BlackjackTask(Task):
    game = "blackjack"
    action_names = ("stand", "hit")
    aliases = {"stick": STAND, "stay": STAND, "draw": HIT}

    def draw(self, view: BlackjackView, size: int) -> np.ndarray:
        image = render.canvas(size, render.FELT)
        margin, text_size = round(size * 0.04), round(size * 0.07)
        width = round(size * 0.2)
        height = render.card_height(width)
        render.write(image, "Dealer", size / 2, size * 0.06, text_size, render.WHITE, render.FELT)
        dealer_top = round(size * 0.11)
        render.paste(
            image, render.card_sprite(view.dealer_up, width), size // 2 - width - margin, dealer_top
        )
        render.paste(image, render.card_back(width), size // 2 + margin, dealer_top)
        player_label_y = dealer_top + height + size * 0.07
        render.write(
            image, "Player", size / 2, player_label_y, text_size, render.WHITE, render.FELT
        )
        self._draw_row(image, view.player, round(player_label_y + size * 0.05), margin)
        return image

    @staticmethod
    def _draw_row(image: np.ndarray, cards: tuple[Card, ...], top: int, margin: int) -> None:
        """Cards side by side, narrower for long hands, overlapping for very long ones."""
        size, count = image.shape[0], len(cards)
        room, gap = size - 2 * margin, margin
        width = max(min(round(size * 0.2), (room - gap * (count - 1)) // count), size // 10)
        step = width + gap if count == 1 else min(width + gap, (room - width) / (count - 1))
        left = (size - (width + step * (count - 1))) / 2
        for i, card in enumerate(cards):
            render.paste(image, render.card_sprite(card, width), round(left + i * step), top)

    def describe(self, view: BlackjackView) -> str:
        cards = " ".join(str(card) for card in view.player)
        return f"Dealer shows {view.dealer_up} and a face-down card. Player has {cards}."

    def labels(self, view: BlackjackView) -> list[Label]:
        labels = card_labels("dealer", view.dealer_up)
        for i in range(LABELLED_PLAYER_CARDS):
            labels += card_labels(f"player{i}", view.player[i] if i < len(view.player) else None)
        return labels

    def prompt(self, view: BlackjackView, cot: bool = True) -> str:
        intro = (
            "You are a blackjack player. The image shows the dealer's cards, one face up and one "
            "face down, and your cards. Your goal is to beat the dealer: get a total closer to 21 "
            "than the dealer's without going over 21. J, Q and K count as 10; an ace counts as 1 "
            'or 11. "stand" keeps your cards and lets the dealer play; "hit" takes one more card.\n'
        )
        fields = (
            [
                (
                    "thoughts",
                    '"{your cards and their total, the dealer\'s visible card, and your choice}"',
                ),
            ]
            if cot
            else []
        )
        return intro + reply_format([*fields, ("action", action_choices(self.action_names))])

    def legal_actions(self, view: BlackjackView) -> tuple[int, ...]:
        return (STAND, HIT)

    def oracle_action(self, view: BlackjackView) -> int:
        return basic_strategy(*hand_total(view.player), view.dealer_up)

    def thoughts(self, view: BlackjackView, action: int) -> dict[str, Any]:
        # The cards before their sum: a small model adds written numbers far more reliably
        # than it reads a total off the picture (10-14 % of totals right without them).
        total, soft = hand_total(view.player)
        dealer, _ = hand_total([view.dealer_up])
        cards = " + ".join(str(card.value) for card in view.player)
        soft_word = "a soft " if soft else ""
        fact = (
            f"I have {cards} = {soft_word}{total}, and the dealer's visible card counts {dealer}."
        )
        name = self.action_names[action]
        if action == self.oracle_action(view):
            return {"thoughts": f"{fact} Basic strategy is to {name}, so I {name}."}
        return {"thoughts": f"{fact} I {name}."}

    def stated_facts(self, reply: str) -> dict[str, str]:
        thoughts, facts = first_value(reply, "thoughts") or "", {}
        if hand := _HAND.search(thoughts):
            facts["player cards"] = "".join(hand["cards"].split())
            facts["player total"] = hand["total"]
        if dealer := _DEALER.search(thoughts):
            facts["dealer card"] = dealer[1]
        return facts


_HAND = re.compile(r"i have (?P<cards>[\d +]+?) = (?P<total>(?:a soft )?\d+)")
_DEALER = re.compile(r"dealer's visible card counts (\d+)")


class BlackjackEnv(GameEnv):
    """Beat the dealer at blackjack: Gymnasium's Blackjack-v1 rules, seen as a picture.

    ## Actions
    ``0`` is stand, ``1`` is hit.

    ## Observation
    An RGB image of the dealer's face-up card and face-down card and the player's cards,
    shape (image_size, image_size, 3). ``info["description"]`` says the same in text; the
    face-down card is never revealed in the observation or in ``info``.

    ## Rules
    An infinite deck: every card is drawn with replacement, each rank and suit equally
    likely. J, Q and K count 10; an ace counts 11 unless that busts the hand. After the
    player stands, the dealer draws until reaching 17 or more (standing on a soft 17).

    ## Rewards
    A hit that busts (over 21) gives -1 at once. Standing gives +1 if the player's total beats
    the dealer's (or the dealer busts), 0 for a tie and -1 otherwise. With ``natural=True``,
    a winning two-card 21 pays +1.5 (off by default, as in Blackjack-v1).
    ``reset(options={"player": ["AH", "7S"], "dealer": ["10D", "6C"]})`` pins the hands;
    the dealer's first card is the face-up one.

    ## Episode end
    Terminated by a bust or by standing.

    ## Version history
    v0: Blackjack-v1's rules (``natural=False``, ``sab=False``) with a picture of the table.
    """

    max_steps = 20  # a hit adds at least 1 to a hard total that starts at 2 or more

    def __init__(
        self, natural: bool = False, image_size: int = 300, render_mode: str | None = None
    ):
        super().__init__(image_size, render_mode)
        self.natural = natural
        self.task = BlackjackTask()
        self.action_space = spaces.Discrete(2)
        self.player: list[Card] = []
        self.dealer: list[Card] = []

    def view(self) -> BlackjackView:
        return BlackjackView(self.dealer[0], tuple(self.player))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options:
            self.player, self.dealer = _pinned_hands(options)
        else:
            self.dealer = [random_card(self.np_random) for _ in range(2)]
            self.player = [random_card(self.np_random) for _ in range(2)]
        return self.observe(), self._info()

    def step(self, action: int):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0 (stand) or 1 (hit), got {action!r}")
        action = int(action)  # numpy integers would leak into formulas and infos
        if action == HIT:
            self.player.append(random_card(self.np_random))
            bust = hand_total(self.player)[0] > 21
            return (
                self.observe(),
                -1.0 if bust else 0.0,
                bust,
                False,
                self._info(invalid_action=False),
            )
        while hand_total(self.dealer)[0] < 17:
            self.dealer.append(random_card(self.np_random))
        player, dealer = _score(self.player), _score(self.dealer)
        reward = float(np.sign(player - dealer))
        if self.natural and reward == 1.0 and len(self.player) == 2 and player == 21:
            reward = 1.5
        return self.observe(), reward, True, False, self._info(invalid_action=False)


def _score(cards: list[Card]) -> int:
    total = hand_total(cards)[0]
    return 0 if total > 21 else total


def _pinned_hands(options: dict[str, Any]) -> tuple[list[Card], list[Card]]:
    if set(options) != {"player", "dealer"}:
        raise ValueError(
            f"Blackjack options are {{'player': [...], 'dealer': [up, hidden]}}, got keys "
            f"{sorted(options)}"
        )
    dealer = list(parse_cards(options["dealer"], 2, "dealer"))
    player = list(parse_cards(options["player"], what="player"))
    if len(player) < 2 or hand_total(player)[0] > 21:
        raise ValueError(
            f"player must hold at least 2 cards totalling 21 or less: {options['player']}"
        )
    return player, dealer
