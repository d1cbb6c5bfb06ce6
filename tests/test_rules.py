"""Pinned-state tables of every reward and termination rule of the four card games (the
paper's rules, as the README's "The games" states them)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import rlvlm
from rlvlm.games.cards import RANKS, SUITS, Card, hand_total

SMALL = 64

#: The paper's action ids, written out independently of the games' own tables.
EZ_ACTIONS = {"+": 10, "*": 11, "=": 12}
P24_ACTIONS = {"+": 10, "-": 11, "*": 12, "/": 13, "(": 14, ")": 15, "=": 16}


def formula_actions(text: str, operators: dict[str, int]) -> list[int]:
    """``"2 * 6 ="`` -> action ids: numbers 1..10 are actions 0..9."""
    return [int(t) - 1 if t.isdigit() else operators[t] for t in text.split()]


def play(name: str, options: dict, actions: list[int], **kwargs) -> tuple[list, bool, bool]:
    """Play ``actions`` from a pinned start; every step but the last must leave the episode on."""
    env = rlvlm.make(name, image_size=SMALL, **kwargs)
    env.reset(seed=0, options=options)
    rewards = []
    terminated = truncated = False
    for i, action in enumerate(actions):
        _, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        if i < len(actions) - 1:
            assert not (terminated or truncated), f"episode ended early, at step {i + 1}"
    return rewards, terminated, truncated


def test_action_names_follow_the_spec():
    names = {name: rlvlm.make(name).unwrapped.task.action_names for name in rlvlm.games.CARD_GAMES}
    numbers = tuple(str(n) for n in range(1, 11))
    assert names["numberline"] == ("-", "+")
    assert names["ezpoints"] == (*numbers, *EZ_ACTIONS)
    assert names["points24"] == (*numbers, *P24_ACTIONS)
    assert names["blackjack"] == ("stand", "hit")


@pytest.mark.parametrize("name", rlvlm.games.CARD_GAMES)
@pytest.mark.parametrize("action", [99, -1, 1.0, "1"])
def test_invalid_action_id_raises(name, action):
    env = rlvlm.make(name, image_size=SMALL)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be"):
        env.step(action)


# ----------------------------------------------------------------------------- NumberLine

MINUS, PLUS = 0, 1

NUMBERLINE_RULES = [
    # id, (target, current), actions, rewards, terminated, truncated
    ("closer", (3, 1), [PLUS], [0.0], False, False),
    ("closer-from-above", (1, 4), [MINUS], [0.0], False, False),
    ("away", (3, 1), [MINUS], [-1.0], False, False),
    ("away-from-above", (1, 4), [PLUS], [-1.0], False, False),
    ("blocked-at-0", (3, 0), [MINUS], [-1.0], False, False),
    ("blocked-at-max", (2, 5), [PLUS], [-1.0], False, False),
    ("reach-up", (3, 2), [PLUS], [1.0], True, False),
    ("reach-down", (0, 1), [MINUS], [1.0], True, False),
    ("walk-to-target", (5, 0), [PLUS] * 5, [0.0] * 4 + [1.0], True, False),
    ("truncated-after-10", (5, 0), [MINUS] * 10, [-1.0] * 10, False, True),
    ("dither-then-truncate", (5, 0), [PLUS, MINUS] * 5, [0.0, -1.0] * 5, False, True),
    ("reach-on-step-10", (1, 0), [MINUS] * 9 + [PLUS], [-1.0] * 9 + [1.0], True, False),
]


@pytest.mark.parametrize(
    ("start", "actions", "rewards", "terminated", "truncated"),
    [row[1:] for row in NUMBERLINE_RULES],
    ids=[row[0] for row in NUMBERLINE_RULES],
)
def test_numberline_rules(start, actions, rewards, terminated, truncated):
    options = {"target": start[0], "current": start[1]}
    assert play("numberline", options, actions) == (rewards, terminated, truncated)


def test_numberline_current_moves_and_clamps():
    env = rlvlm.make("numberline", image_size=SMALL)
    env.reset(options={"target": 0, "current": 4})
    currents = [env.unwrapped.current]
    for action in [PLUS, PLUS, PLUS, MINUS]:
        env.step(action)
        currents.append(env.unwrapped.current)
    assert currents == [4, 5, 5, 5, 4]


def raw_start(seed: int) -> tuple[int, int]:
    """The draw the env makes before the equal-start rule: gymnasium seeds like default_rng."""
    target, current = np.random.default_rng(seed).integers(0, 6, 2)
    return int(target), int(current)


def test_numberline_equal_start_quirk_reproduced():
    env = rlvlm.make("numberline", image_size=SMALL)
    equal_draws = set()
    for seed in range(300):
        env.reset(seed=seed)
        target, current = raw_start(seed)
        if target == current:
            equal_draws.add(target)
            target = (target + 1) % 5  # the reference's rule: mod 5, not mod 6
        assert (env.unwrapped.target, env.unwrapped.current) == (target, current), seed
    assert {4, 5} <= equal_draws  # both wrap-arounds (4 -> 0 and 5 -> 1) were exercised


def test_numberline_start_statistics():
    env = rlvlm.make("numberline", image_size=SMALL)
    targets = Counter()
    for seed in range(3000):
        env.reset(seed=seed)
        assert env.unwrapped.target != env.unwrapped.current
        targets[env.unwrapped.target] += 1
    # 5/36 for the top value, 6/36 or 7/36 for the others
    assert targets[5] < min(targets[t] for t in range(5))
    assert targets[1] > max(targets[t] for t in (0, 2, 3, 4, 5))


# ----------------------------------------------------------------------------- EZPoints

EZPOINTS_RULES = [
    # id, cards, formula, rewards, terminated, truncated
    ("product", ["2H", "6S"], "2 * 6 =", [0, 0, 0, 10], True, False),
    ("product-commuted", ["2H", "6S"], "6 * 2 =", [0, 0, 0, 10], True, False),
    ("sum", ["6H", "6S"], "6 + 6 =", [0, 0, 0, 10], True, False),
    ("face-card-is-ten", ["QH", "2S"], "10 + 2 =", [0, 0, 0, 10], True, False),
    ("wrong-value", ["2H", "6S"], "2 + 6 =", [0, 0, 0, -1], True, False),
    ("one-card-only", ["6H", "2S"], "6 =", [0, -1], True, False),
    ("empty-formula", ["6H", "2S"], "=", [-1], True, False),
    ("juxtaposed", ["2H", "6S"], "2 6 =", [0, 0, -1], True, False),
    ("trailing-operator", ["2H", "6S"], "2 * 6 * =", [0, 0, 0, 0, -1], True, False),
    ("operators-twice", ["2H", "6S"], "* * =", [0, 0, -1], True, False),
    ("same-card-twice", ["6H", "2S"], "6 6", [0, -1], False, False),
    ("not-a-card", ["6H", "2S"], "5", [-1], False, False),
    ("blank-is-ignored", ["6H", "2S"], "6 6 * 2 =", [0, -1, 0, 0, 10], True, False),
    ("blanks-truncate", ["6H", "2S"], "5 5 5 5 5 5 =", [-1] * 6 + [-1], False, True),
    # the visible formula 6 * 2 wins, but the blanks make six entries: the 7th step truncates
    ("blanks-count", ["6H", "2S"], "6 6 6 6 * 2 =", [0, -1, -1, -1, 0, 0, -1], False, True),
    ("six-entries-7th-step", ["2H", "6S"], "* + * + * + =", [0] * 6 + [-1], False, True),
    ("five-entries-then-equals", ["2H", "6S"], "2 * 6 + + =", [0] * 5 + [-1], True, False),
    ("six-entries-then-number", ["2H", "6S"], "+ + + + + + 2", [0] * 6 + [-1], False, True),
]


@pytest.mark.parametrize(
    ("cards", "formula", "rewards", "terminated", "truncated"),
    [row[1:] for row in EZPOINTS_RULES],
    ids=[row[0] for row in EZPOINTS_RULES],
)
def test_ezpoints_rules(cards, formula, rewards, terminated, truncated):
    actions = formula_actions(formula, EZ_ACTIONS)
    assert play("ezpoints", {"cards": cards}, actions) == (rewards, terminated, truncated)


@pytest.mark.parametrize(
    ("name", "cards"), [("ezpoints", ["6H", "2S"]), ("points24", ["6H", "2S", "3D", "4C"])]
)
def test_invalid_number_leaves_an_invisible_blank(name, cards):
    env = rlvlm.make(name, image_size=SMALL)
    env.reset(options={"cards": cards})
    env.step(5)  # 6
    observation, info = env.unwrapped.observe(), env.unwrapped._info()
    new_observation, reward, terminated, truncated, new_info = env.step(5)  # 6 again
    assert (reward, terminated, truncated) == (-1.0, False, False)
    assert new_info["invalid_action"] is True
    assert new_info["description"] == info["description"]
    np.testing.assert_array_equal(new_observation, observation)
    assert env.unwrapped.view().formula == (6,)
    assert len(env.unwrapped.formula) == 2  # but the blank is there, for the length limit


def test_ezpoints_deals_follow_the_rules():
    env = rlvlm.make("ezpoints", image_size=SMALL)
    products = 0
    for seed in range(300):
        env.reset(seed=seed)
        cards = env.unwrapped.cards
        a, b = (card.value for card in cards)
        assert a + b == 12 or a * b == 12, cards
        assert "A" not in {card.rank for card in cards}
        assert env.unwrapped.task.solution(env.unwrapped.view()) is not None
        products += a * b == 12
    assert 0 < products < 300  # both the product and the sum deals occur


# ----------------------------------------------------------------------------- Points24

POINTS24_RULES = [
    # id, cards, formula, rewards, terminated, truncated
    (
        "exact-rational",
        ["8H", "3S", "8D", "3C"],
        "8 / ( 3 - 8 / 3 ) =",
        [0] * 9 + [10],
        True,
        False,
    ),
    (
        "faces-and-ace",
        ["KH", "2S", "2D", "AC"],
        "( 10 + 2 ) * 2 * 1 =",
        [0] * 9 + [10],
        True,
        False,
    ),
    (
        "no-exponent",
        ["10H", "JS", "QD", "4C"],
        "10 * * 10 * * 10 * 4 =",
        [0] * 9 + [-1],
        True,
        False,
    ),
    ("no-concatenation", ["2H", "4S", "AD", "AC"], "2 4 * 1 * 1 =", [0] * 6 + [-1], True, False),
    (
        "division-by-zero",
        ["8H", "3S", "8D", "3C"],
        "8 / ( 3 - 3 ) * 8 =",
        [0] * 9 + [-1],
        True,
        False,
    ),
    ("not-all-cards", ["8H", "3S", "AD", "5C"], "8 * 3 =", [0, 0, 0, -1], True, False),
    ("wrong-value", ["8H", "3S", "8D", "3C"], "8 + 3 + 8 + 3 =", [0] * 7 + [-1], True, False),
    ("unbalanced", ["8H", "3S", "8D", "3C"], "( 8 / ( 3 - 8 / 3 ) =", [0] * 10 + [-1], True, False),
    ("empty-parens", ["6H", "2S", "2D", "AC"], "( ) 6 * 2 * 2 * 1 =", [0] * 9 + [-1], True, False),
    ("card-used-up", ["8H", "3S", "8D", "3C"], "8 8 8", [0, 0, -1], False, False),
    (
        "blank-is-ignored",
        ["6H", "2S", "2D", "AC"],
        "6 7 * 2 * 2 * 1 =",
        [0, -1] + [0] * 6 + [10],
        True,
        False,
    ),
    ("twenty-one-entries", ["8H", "3S", "8D", "3C"], " ".join(["("] * 21), [0] * 21, False, False),
    (
        "truncated-after-21",
        ["8H", "3S", "8D", "3C"],
        " ".join(["("] * 21 + ["="]),
        [0] * 21 + [-1],
        False,
        True,
    ),
    (
        "blanks-truncate",
        ["8H", "3S", "8D", "3C"],
        " ".join(["7"] * 21 + ["8"]),
        [-1] * 22,
        False,
        True,
    ),
]


@pytest.mark.parametrize(
    ("cards", "formula", "rewards", "terminated", "truncated"),
    [row[1:] for row in POINTS24_RULES],
    ids=[row[0] for row in POINTS24_RULES],
)
def test_points24_rules(cards, formula, rewards, terminated, truncated):
    actions = formula_actions(formula, P24_ACTIONS)
    assert play("points24", {"cards": cards}, actions) == (rewards, terminated, truncated)


def test_points24_deals_are_uniform_cards():
    env = rlvlm.make("points24", image_size=SMALL)
    ranks, suits = Counter(), Counter()
    for seed in range(200):
        env.reset(seed=seed)
        assert len(env.unwrapped.cards) == 4
        ranks.update(card.rank for card in env.unwrapped.cards)
        suits.update(card.suit for card in env.unwrapped.cards)
    assert set(ranks) == set(RANKS) and set(suits) == set(SUITS)
    assert max(ranks.values()) < 3 * min(ranks.values())


# ----------------------------------------------------------------------------- Blackjack

STAND, HIT = 0, 1

BLACKJACK_RULES = [
    # id, natural, player, dealer, actions, rewards, terminated, truncated
    ("win", False, ["10H", "9S"], ["10D", "8C"], [STAND], [1.0], True, False),
    ("loss", False, ["10H", "6S"], ["10D", "8C"], [STAND], [-1.0], True, False),
    ("tie", False, ["KH", "QS"], ["10D", "QC"], [STAND], [0.0], True, False),
    ("natural-no-bonus", False, ["AH", "KS"], ["9D", "8C"], [STAND], [1.0], True, False),
    ("natural-bonus", True, ["AH", "KS"], ["9D", "8C"], [STAND], [1.5], True, False),
    ("natural-bonus-order", True, ["KS", "AH"], ["9D", "8C"], [STAND], [1.5], True, False),
    ("three-card-21-no-bonus", True, ["7H", "7S", "7D"], ["9D", "8C"], [STAND], [1.0], True, False),
    ("natural-tie", True, ["AH", "KS"], ["AD", "KC"], [STAND], [0.0], True, False),
    ("natural-beats-20", True, ["AH", "QS"], ["10D", "JC"], [STAND], [1.5], True, False),
    ("dealer-stands-soft-17-win", False, ["10H", "8S"], ["AD", "6C"], [STAND], [1.0], True, False),
    ("dealer-stands-soft-17-tie", False, ["10H", "7S"], ["AD", "6C"], [STAND], [0.0], True, False),
    (
        "dealer-stands-soft-17-loss",
        False,
        ["10H", "6S"],
        ["AD", "6C"],
        [STAND],
        [-1.0],
        True,
        False,
    ),
    ("dealer-stands-hard-17", False, ["10H", "8S"], ["10D", "7C"], [STAND], [1.0], True, False),
    ("soft-player-total", False, ["AH", "7S"], ["10D", "7C"], [STAND], [1.0], True, False),
    ("bust-on-hit", False, ["KH", "9S", "2D"], ["10D", "7C"], [HIT], [-1.0], True, False),
    ("hit-without-bust", False, ["2H", "3S"], ["10D", "7C"], [HIT], [0.0], False, False),
]


@pytest.mark.parametrize(
    ("natural", "player", "dealer", "actions", "rewards", "terminated", "truncated"),
    [row[1:] for row in BLACKJACK_RULES],
    ids=[row[0] for row in BLACKJACK_RULES],
)
def test_blackjack_rules(natural, player, dealer, actions, rewards, terminated, truncated):
    options = {"player": player, "dealer": dealer}
    result = play("blackjack", options, actions, natural=natural)
    assert result == (rewards, terminated, truncated)


@pytest.mark.parametrize("dealer", [["AD", "6C"], ["10D", "7C"], ["9D", "8C"], ["KD", "QC"]])
def test_blackjack_dealer_with_17_or_more_draws_nothing(dealer):
    env = rlvlm.make("blackjack", image_size=SMALL)
    env.reset(seed=0, options={"player": ["10H", "8S"], "dealer": dealer})
    env.step(STAND)
    assert [str(card) for card in env.unwrapped.dealer] == dealer


def score(cards: list[Card]) -> int:
    total = hand_total(cards)[0]
    return 0 if total > 21 else total


def test_blackjack_stand_on_20_against_a_drawing_dealer():
    rewards = set()
    for seed in range(40):
        env = rlvlm.make("blackjack", image_size=SMALL)
        env.reset(seed=seed, options={"player": ["KH", "QS"], "dealer": ["10D", "6C"]})
        _, reward, terminated, truncated, _ = env.step(STAND)
        dealer = env.unwrapped.dealer
        assert (terminated, truncated) == (True, False)
        assert dealer[:2] == [Card("10", "D"), Card("6", "C")] and len(dealer) >= 3
        # the dealer draws while under 17 and stops at 17 or more
        assert all(hand_total(dealer[:n])[0] < 17 for n in range(2, len(dealer)))
        assert hand_total(dealer)[0] >= 17
        assert reward == np.sign(20 - score(dealer))
        rewards.add(reward)

        # the dealer's cards come from the env's seeded generator: the same seed, the same cards
        twin = rlvlm.make("blackjack", image_size=SMALL)
        twin.reset(seed=seed, options={"player": ["KH", "QS"], "dealer": ["10D", "6C"]})
        twin.step(STAND)
        assert twin.unwrapped.dealer == dealer
    assert len(rewards) >= 2  # several outcomes were exercised


def test_blackjack_bust_is_immediate_and_hits_come_from_the_seed():
    busts = 0
    for seed in range(30):
        env = rlvlm.make("blackjack", image_size=SMALL)
        env.reset(seed=seed, options={"player": ["10H", "6S"], "dealer": ["10D", "7C"]})
        _, reward, terminated, truncated, _ = env.step(HIT)
        player = env.unwrapped.player
        assert len(player) == 3 and not truncated
        bust = hand_total(player)[0] > 21
        assert terminated == bust
        assert reward == (-1.0 if bust else 0.0)
        assert len(env.unwrapped.dealer) == 2  # the dealer does not play after a bust
        busts += bust
    assert 0 < busts < 30
