"""Contract tests every registered game passes: API, seeding, pickling, pictures, labels, info."""

from __future__ import annotations

import itertools
import json
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlvlm
from rlvlm.evaluation import OraclePolicy, RandomPolicy, run_episodes, summarize
from rlvlm.games import get_game, render
from rlvlm.games.base import GameEnv
from rlvlm.games.cards import RANKS, SUITS, Card
from rlvlm.games.numberline import NumberLineView
from rlvlm.games.points import PointsView

GAME_NAMES = list(rlvlm.games.CARD_GAMES)  # ALFWorld: tests/test_alfworld.py
SMALL = 64  # pixels, where the picture does not matter

#: Pinned starts that every game accepts, for tests that need a known state.
PINNED = {
    "numberline": {"target": 3, "current": 1},
    "ezpoints": {"cards": ["QH", "2S"]},
    "points24": {"cards": ["8H", "3S", "8D", "3C"]},
    "blackjack": {"player": ["2H", "3S"], "dealer": ["10D", "6C"]},
}


def make(name: str, **kwargs) -> gym.Env:
    return rlvlm.make(name, image_size=kwargs.pop("image_size", SMALL), **kwargs)


def rollout(env: gym.Env, seed: int, steps: int, action_seed: int = 0) -> list[tuple]:
    """Play ``steps`` seeded random actions, resetting (unseeded) whenever an episode ends."""
    actions = np.random.default_rng(action_seed)
    observation, info = env.reset(seed=seed)
    record: list[tuple] = [(observation.tobytes(), info)]
    for _ in range(steps):
        action = int(actions.integers(env.action_space.n))
        observation, reward, terminated, truncated, info = env.step(action)
        record.append((observation.tobytes(), reward, terminated, truncated, info))
        if terminated or truncated:
            observation, info = env.reset()
            record.append((observation.tobytes(), info))
    return record


def distinct_colours(image: np.ndarray) -> int:
    return len(np.unique(image.reshape(-1, 3), axis=0))


# ----------------------------------------------------------------------------- registration


@pytest.mark.parametrize("name", GAME_NAMES)
@pytest.mark.parametrize("image_size", [300, SMALL, 97])
def test_check_env(name, image_size):
    env = rlvlm.GAMES[name].make(image_size=image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # check_env reports most problems as warnings
        check_env(env.unwrapped)


@pytest.mark.parametrize("game", [rlvlm.GAMES[name] for name in GAME_NAMES], ids=GAME_NAMES)
def test_gymnasium_make_by_id(game):
    env = gym.make(game.env_id, image_size=SMALL)
    assert env.spec is not None and env.spec.id == game.env_id
    assert isinstance(env.unwrapped, GameEnv)
    observation, info = env.reset(seed=0)
    assert env.observation_space.contains(observation)
    assert isinstance(info["description"], str) and info["description"]
    env.step(0)


def test_env_ids_and_unknown_game():
    assert [game.env_id for game in rlvlm.GAMES.values()] == [
        "rlvlm/NumberLine-v0",
        "rlvlm/EZPoints-v0",
        "rlvlm/Points24-v0",
        "rlvlm/Blackjack-v0",
        "rlvlm/ALFWorld-v0",
    ]
    with pytest.raises(ValueError, match="numberline, ezpoints, points24, blackjack"):
        get_game("nope")


@pytest.mark.parametrize("name", GAME_NAMES)
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 16}, "image_size"),
        ({"image_size": 64.0}, "image_size"),
        ({"render_mode": "human"}, "render_mode"),
    ],
)
def test_bad_constructor_arguments(name, kwargs, match):
    env_class = type(make(name).unwrapped)  # gym.make would wrap "human" rendering itself
    with pytest.raises(ValueError, match=match):
        env_class(**kwargs)


# ----------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("name", GAME_NAMES)
def test_same_seed_rollouts_are_identical(name):
    first = rollout(make(name), seed=123, steps=60)
    second = rollout(make(name), seed=123, steps=60)
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a == b  # observation bytes, rewards, flags and infos


@pytest.mark.parametrize("name", GAME_NAMES)
def test_different_seeds_deal_differently(name):
    env = make(name)
    views = set()
    for seed in range(20):
        env.reset(seed=seed)
        views.add(env.unwrapped.view())
    assert len(views) >= 5


@pytest.mark.parametrize("name", GAME_NAMES)
def test_pickled_env_continues_identically(name):
    env = make(name)
    actions = np.random.default_rng(7)
    env.reset(seed=11, options=PINNED[name])
    assert env.step(1)[2:4] == (False, False)  # mid-episode
    copy = pickle.loads(pickle.dumps(env))
    for _ in range(30):
        action = int(actions.integers(env.action_space.n))
        original = env.step(action)
        copied = copy.step(action)
        assert original[0].tobytes() == copied[0].tobytes()
        assert original[1:] == copied[1:]
        if original[2] or original[3]:
            # the generators were copied too: the next random deal is the same
            assert env.reset()[0].tobytes() == copy.reset()[0].tobytes()
            assert env.unwrapped.view() == copy.unwrapped.view()


# ----------------------------------------------------------------------------- observations


@pytest.mark.parametrize("name", GAME_NAMES)
def test_renders_from_an_unrelated_working_directory(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    render.clear_caches()  # fonts must be found again from here, not from a cache
    env = make(name, image_size=71)
    observation, _ = env.reset(seed=3)
    assert distinct_colours(observation) > 2
    observation, *_ = env.step(0)
    assert distinct_colours(observation) > 2


@pytest.mark.parametrize("name", GAME_NAMES)
@pytest.mark.parametrize("image_size", [SMALL, 90])
def test_observation_dtype_shape_and_render(name, image_size):
    env = make(name, image_size=image_size, render_mode="rgb_array")
    observation, _ = env.reset(seed=5)
    assert observation.dtype == np.uint8
    assert observation.shape == (image_size, image_size, 3)
    np.testing.assert_array_equal(env.render(), observation)
    observation, *_ = env.step(1)
    assert observation.shape == (image_size, image_size, 3)
    np.testing.assert_array_equal(env.render(), observation)

    plain = make(name)
    plain.reset(seed=5)
    assert plain.render() is None  # no render_mode: nothing to render


@pytest.mark.parametrize("name", GAME_NAMES)
def test_observations_are_writable_copies_of_the_cached_frame(name):
    env = make(name)
    observation, _ = env.reset(seed=9)
    expected = observation.copy()
    observation[:] = 0  # a caller scribbling on its observation must not change the next one
    again, _ = env.reset(seed=9)
    np.testing.assert_array_equal(again, expected)


# ----------------------------------------------------------------------------- info


def test_blackjack_info_never_shows_the_hidden_card():
    env = make("blackjack")
    for seed in range(20):
        _, info = env.reset(seed=seed, options={"player": ["2H", "3S"], "dealer": ["10D", "6C"]})
        infos = [info]
        done = False
        while not done:
            # hit while the total is low, then stand so that the dealer plays too
            total = sum(card.value for card in env.unwrapped.player)
            _, _, terminated, truncated, info = env.step(1 if total < 15 else 0)
            infos.append(info)
            done = terminated or truncated
        held = [str(card) for card in env.unwrapped.player].count("6C")
        for info in infos:
            text = json.dumps(info)
            # the player may draw a 6C of their own; the dealer's is never told
            assert text.count("6C") <= held, (seed, info)
            assert "6C" not in info["description"].split("Player")[0]


@pytest.mark.parametrize("name", GAME_NAMES)
def test_info_holds_only_small_json_values(name):
    env = make(name)
    actions = np.random.default_rng(0)
    _, info = env.reset(seed=0)
    infos = [info]
    for _ in range(40):
        _, _, terminated, truncated, info = env.step(int(actions.integers(env.action_space.n)))
        infos.append(info)
        if terminated or truncated:
            infos.append(env.reset()[1])
    for info in infos:
        assert set(info) <= {"description", "invalid_action"}
        assert isinstance(info["description"], str)
        for value in info.values():
            assert isinstance(value, (str, bool, int, float)) or value is None
        assert json.loads(json.dumps(info)) == info
        assert len(json.dumps(info)) < 500


# ----------------------------------------------------------------------------- reset options

BAD_OPTIONS = [
    ("numberline", {"target": 3}, "got keys"),
    ("numberline", {"target": 3, "current": 1, "extra": 0}, "got keys"),
    ("numberline", {"target": 6, "current": 1}, r"integers in 0\.\.5"),
    ("numberline", {"target": 3, "current": -1}, r"integers in 0\.\.5"),
    ("numberline", {"target": 2.0, "current": 1}, r"integers in 0\.\.5"),
    ("numberline", {"target": True, "current": 0}, r"integers in 0\.\.5"),
    ("numberline", {"target": 4, "current": 4}, "must differ"),
    ("ezpoints", {"card": ["QH", "2S"]}, "got keys"),
    ("ezpoints", {"cards": ["1H", "2S"]}, "bad card '1H'"),
    ("ezpoints", {"cards": ["ZZ", "2S"]}, "bad card 'ZZ'"),
    ("ezpoints", {"cards": ["QH", "2S", "3D"]}, "must hold 2 cards, got 3"),
    ("ezpoints", {"cards": "QH 2S"}, "list of card codes"),
    ("points24", {"cards": ["QH", "2S", "3D"]}, "must hold 4 cards, got 3"),
    ("points24", {"cards": ["QH", "2S", "3D", "1C"]}, "bad card '1C'"),
    ("points24", {"cards": ["QH", "2S", "3D", "4C"], "seed": 1}, "got keys"),
    ("blackjack", {"player": ["KH", "QS"]}, "got keys"),
    ("blackjack", {"player": ["KH", "QS", "2D"], "dealer": ["9D", "8C"]}, "21 or less"),
    ("blackjack", {"player": ["KH"], "dealer": ["9D", "8C"]}, "at least 2 cards"),
    ("blackjack", {"player": ["KH", "QS"], "dealer": ["9D"]}, "dealer must hold 2 cards"),
    ("blackjack", {"player": ["KH", "QS"], "dealer": ["9D", "ZZ"]}, "bad card 'ZZ'"),
]


@pytest.mark.parametrize(("name", "options", "match"), BAD_OPTIONS)
def test_bad_reset_options_raise_clear_errors(name, options, match):
    with pytest.raises(ValueError, match=match):
        make(name).reset(seed=0, options=options)


# ----------------------------------------------------------------------------- labels


def check_label_schema(labels) -> dict[str, int]:
    names = [label.name for label in labels]
    assert len(names) == len(set(names))
    for label in labels:
        assert 0 <= label.value < label.num_classes, label
    return {label.name: label.value for label in labels}


def decode_card(values: dict[str, int], slot: str) -> Card | None:
    rank, suit = values[f"{slot}_rank"], values[f"{slot}_suit"]
    assert (rank == 0) == (suit == 0)
    return None if rank == 0 else Card(RANKS[rank - 1], SUITS[suit - 1])


@pytest.mark.parametrize("name", GAME_NAMES)
def test_labels_are_valid_and_fixed_per_game(name):
    env = make(name)
    schemas = set()
    for seed in range(10):
        env.reset(seed=seed)
        for _ in range(3):
            labels = env.unwrapped.task.labels(env.unwrapped.view())
            check_label_schema(labels)
            schemas.add(tuple((label.name, label.num_classes) for label in labels))
            _, _, terminated, truncated, _ = env.step(1)
            if terminated or truncated:
                break
    assert len(schemas) == 1  # the same label slots whatever the state


def test_numberline_labels_identify_the_view():
    env = make("numberline")
    for seed in range(20):
        env.reset(seed=seed)
        game = env.unwrapped
        values = check_label_schema(game.task.labels(game.view()))
        assert values == {"target": game.target, "current": game.current}


@pytest.mark.parametrize(
    ("name", "cards", "presses"),
    [
        ("ezpoints", ["QH", "2S"], [9, 11, 1]),  # 10 * 2
        ("points24", ["8H", "3S", "8D", "AC"], [14, 7, 13, 2, 15, 0]),  # ( 8 / 3 ) 1
    ],
)
def test_points_labels_identify_cards_and_formula(name, cards, presses):
    env = make(name)
    env.reset(seed=0, options={"cards": cards})
    task = env.unwrapped.task
    for pressed in range(len(presses) + 1):
        values = check_label_schema(task.labels(env.unwrapped.view()))
        decoded = [decode_card(values, f"card{i}") for i in range(len(cards))]
        assert [str(card) for card in decoded] == cards
        entries = [values[f"formula{i}"] for i in range(task.formula_limit + 1)]
        assert entries == [a + 1 for a in presses[:pressed]] + [0] * (
            task.formula_limit + 1 - pressed
        )
        if pressed < len(presses):
            env.step(presses[pressed])


def test_points_labels_ignore_the_blank_of_an_invalid_number():
    env = make("ezpoints")
    env.reset(seed=0, options={"cards": ["6H", "2S"]})
    env.step(5)  # 6
    env.step(5)  # 6 again: invalid, a blank
    env.step(11)  # *
    values = check_label_schema(env.unwrapped.task.labels(env.unwrapped.view()))
    assert [values[f"formula{i}"] for i in range(3)] == [6, 12, 0]


def test_blackjack_labels_identify_the_visible_cards():
    env = make("blackjack")
    env.reset(seed=4, options={"player": ["2H", "3S"], "dealer": ["QD", "6C"]})
    env.step(1)  # hit: a third card from the seeded generator
    game = env.unwrapped
    values = check_label_schema(game.task.labels(game.view()))
    assert decode_card(values, "dealer") == Card("Q", "D")
    player = [decode_card(values, f"player{i}") for i in range(8)]
    assert player[:3] == game.player and player[3:] == [None] * 5
    # the hidden card has no slot of its own
    assert not any(name.startswith("dealer") and name[6:7].isdigit() for name in values)


# ----------------------------------------------------------------------------- pictures


def test_numberline_pictures_are_pairwise_different():
    task = make("numberline").unwrapped.task
    pictures = {
        (t, c): task.draw(NumberLineView(t, c), SMALL).tobytes()
        for t, c in itertools.product(range(6), repeat=2)
    }
    assert len(set(pictures.values())) == 36


@pytest.mark.parametrize(
    ("name", "options_a", "options_b"),
    [
        ("ezpoints", {"cards": ["2H", "6S"]}, {"cards": ["3H", "6S"]}),
        ("ezpoints", {"cards": ["2H", "6S"]}, {"cards": ["2D", "6S"]}),  # suit only
        ("ezpoints", {"cards": ["2H", "6S"]}, {"cards": ["6S", "2H"]}),  # order
        ("ezpoints", {"cards": ["10H", "2S"]}, {"cards": ["KH", "2S"]}),  # same value
        ("points24", {"cards": ["8H", "3S", "8D", "3C"]}, {"cards": ["8H", "3S", "8D", "4C"]}),
        (
            "blackjack",
            {"player": ["2H", "3S"], "dealer": ["10D", "6C"]},
            {"player": ["2H", "3S"], "dealer": ["9D", "6C"]},
        ),
        (
            "blackjack",
            {"player": ["2H", "3S"], "dealer": ["10D", "6C"]},
            {"player": ["2H", "4S"], "dealer": ["10D", "6C"]},
        ),
    ],
)
def test_different_deals_look_different(name, options_a, options_b):
    env = make(name)
    a, _ = env.reset(options=options_a)
    b, _ = env.reset(options=options_b)
    assert a.tobytes() != b.tobytes()


def test_blackjack_hidden_card_does_not_change_the_picture():
    env = make("blackjack")
    a, _ = env.reset(options={"player": ["2H", "3S"], "dealer": ["10D", "6C"]})
    b, _ = env.reset(options={"player": ["2H", "3S"], "dealer": ["10D", "AS"]})
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["ezpoints", "points24"])
def test_formula_pictures_follow_the_formula(name):
    env = make(name)
    env.reset(options=PINNED[name])
    task = env.unwrapped.task
    cards = env.unwrapped.cards
    seen = set()
    for formula in [(), (8,), (8, "+"), (8, "*"), (3, "+")]:
        seen.add(task.draw(PointsView(cards, formula), SMALL).tobytes())
    assert len(seen) == 5


def is_red(image: np.ndarray) -> np.ndarray:
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return (r > 150) & (g < 90) & (b < 90)


@pytest.mark.parametrize(
    ("name", "red", "black"),
    [
        ("ezpoints", {"cards": ["QH", "2D"]}, {"cards": ["QS", "2C"]}),
        ("points24", {"cards": ["AH", "5D", "9H", "KD"]}, {"cards": ["AS", "5C", "9S", "KC"]}),
        (
            "blackjack",
            {"player": ["7H", "3D"], "dealer": ["JD", "5C"]},
            {"player": ["7S", "3C"], "dealer": ["JC", "5H"]},  # the hidden 5H is not shown
        ),
    ],
)
def test_red_suits_are_drawn_red(name, red, black):
    env = make(name, image_size=128)
    red_picture, _ = env.reset(options=red)
    black_picture, _ = env.reset(options=black)
    assert is_red(red_picture).sum() > 20
    assert is_red(black_picture).sum() == 0


@pytest.mark.parametrize("code", [r + s for r in ("A", "7", "10", "Q") for s in SUITS])
def test_card_sprite_colour_follows_suit(code):
    card = Card(code[:-1], code[-1])
    reds = is_red(render.card_sprite(card, 40)).sum()
    assert (reds > 0) == (code[-1] in "HD")


# ----------------------------------------------------------------------------- baselines

ORACLE_SUCCESS = {
    "numberline": (1.0, 1.0),
    "ezpoints": (1.0, 1.0),
    "points24": (0.6, 0.95),
    "blackjack": (0.35, 0.5),
}


@pytest.mark.parametrize("name", GAME_NAMES)
def test_oracle_success_and_random_below_it(name):
    env_kwargs = {"image_size": SMALL}
    oracle = summarize(
        run_episodes(name, OraclePolicy(), 200, env_kwargs=env_kwargs), name, "oracle"
    )
    low, high = ORACLE_SUCCESS[name]
    assert low <= oracle["success_rate"] <= high
    assert oracle["format_error_rate"] == 0.0
    assert oracle["invalid_action_rate"] == 0.0
    random = summarize(
        run_episodes(name, RandomPolicy(0), 200, env_kwargs=env_kwargs), name, "random"
    )
    assert random["success_rate"] < oracle["success_rate"] - 0.05
    assert random["format_error_rate"] == 0.0
