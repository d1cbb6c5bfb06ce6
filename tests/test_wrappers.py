"""Tests for TextActions (replies as actions) and for expert replies parsing back to actions."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import rlvlm
from rlvlm.games.cards import hand_total
from rlvlm.games.formula import format_formula
from rlvlm.games.wrappers import TextActions

GAME_NAMES = list(rlvlm.games.CARD_GAMES)  # ALFWorld: tests/test_alfworld.py
SMALL = 64
GARBAGE = "I am not sure what to do here."

PINNED = {
    "numberline": {"target": 3, "current": 1},
    "ezpoints": {"cards": ["6H", "2S"]},
    "points24": {"cards": ["8H", "3S", "8D", "3C"]},
    "blackjack": {"player": ["2H", "3S"], "dealer": ["10D", "6C"]},
}

#: The chain-of-thought keys of each game's reply format (the paper's prompts), before "action".
COT_KEYS = {
    "numberline": ["current number", "target number", "thoughts"],
    "ezpoints": ["cards", "current formula", "thoughts"],
    "points24": ["cards", "current formula", "thoughts"],
    "blackjack": ["thoughts"],
}


def wrapped(name: str, **kwargs) -> TextActions:
    return TextActions(rlvlm.make(name, image_size=SMALL), **kwargs)


def reply(action_name: str) -> str:
    return json.dumps({"thoughts": "...", "action": action_name})


# ----------------------------------------------------------------------------- construction


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="on_invalid"):
        wrapped("numberline", on_invalid="skip")
    with pytest.raises(TypeError, match="rlvlm game"):
        TextActions(gym.make("CartPole-v1"))
    with pytest.raises(RuntimeError, match="reset"):
        wrapped("numberline").step(reply("+"))


# ----------------------------------------------------------------------------- valid replies


@pytest.mark.parametrize("on_invalid", ["random", "noop"])
@pytest.mark.parametrize(
    ("name", "action_name", "action"),
    [
        ("numberline", "+", 1),
        ("numberline", "-", 0),
        ("ezpoints", "6", 5),
        ("ezpoints", "*", 11),
        ("points24", "(", 14),
        ("points24", "3", 2),
        ("blackjack", "hit", 1),
        ("blackjack", "stand", 0),
    ],
)
def test_valid_reply_steps_with_the_parsed_action(name, action_name, action, on_invalid):
    env = wrapped(name, on_invalid=on_invalid)
    plain = rlvlm.make(name, image_size=SMALL)
    env.reset(seed=1, options=PINNED[name])
    plain.reset(seed=1, options=PINNED[name])

    observation, reward, terminated, truncated, info = env.step(reply(action_name))
    expected = plain.step(action)
    np.testing.assert_array_equal(observation, expected[0])
    assert (reward, terminated, truncated) == expected[1:4]
    assert env.unwrapped.view() == plain.unwrapped.view()
    assert info["action"] == action
    assert info["format_error"] is False
    assert info["parse_reason"] == "ok"
    assert info["format_errors"] == 0


# ----------------------------------------------------------------------------- format errors


@pytest.mark.parametrize("on_invalid", ["random", "noop"])
@pytest.mark.parametrize("name", GAME_NAMES)
def test_format_errors_are_counted(name, on_invalid):
    env = wrapped(name, on_invalid=on_invalid)
    _, info = env.reset(seed=0, options=PINNED[name])
    assert info["format_errors"] == 0
    bad = [GARBAGE, "{}", '{"action": "maybe"}', '{"action": ""}']
    for count, text in enumerate(bad, start=1):
        _, _, terminated, truncated, info = env.step(text)
        assert info["format_error"] is True
        assert info["parse_reason"] != "ok"
        assert info["format_errors"] == count
        if terminated or truncated:  # random mode may take an ending action
            break
    _, info = env.reset(seed=0)
    assert info["format_errors"] == 0


@pytest.mark.parametrize("name", GAME_NAMES)
def test_random_mode_takes_only_legal_actions(name):
    env = wrapped(name, on_invalid="random")
    taken = set()
    for seed in range(80):
        env.reset(seed=seed, options=PINNED[name])
        first_legal = set(env.unwrapped.legal_actions())
        done = False
        first = True
        while not done:
            legal = env.unwrapped.legal_actions()
            _, _, terminated, truncated, info = env.step(GARBAGE)
            assert info["action"] in legal
            assert info["invalid_action"] is False  # never a used or missing card value
            if first:
                taken.add(info["action"])
                first = False
            done = terminated or truncated
    assert taken == first_legal  # every legal action is a possible fallback


def test_random_mode_on_ezpoints_never_reuses_a_card():
    env = wrapped("ezpoints", on_invalid="random")
    for seed in range(30):
        env.reset(seed=seed, options={"cards": ["6H", "2S"]})
        env.step(reply("6"))
        assert env.unwrapped.legal_actions() == (1, 10, 11, 12)  # "2", "+", "*", "="
        _, _, _, _, info = env.step(GARBAGE)
        assert info["action"] in (1, 10, 11, 12)


@pytest.mark.parametrize("name", GAME_NAMES)
def test_random_mode_is_reproducible_for_a_seeded_reset(name):
    def fallbacks(seed: int) -> list:
        env = wrapped(name, on_invalid="random")
        env.reset(seed=seed)
        actions = []
        for _ in range(60):
            _, _, terminated, truncated, info = env.step(GARBAGE)
            actions.append((info["action"], env.unwrapped.view()))
            if terminated or truncated:
                env.reset(seed=seed + len(actions))
        return actions

    assert fallbacks(5) == fallbacks(5)
    assert fallbacks(5) != fallbacks(6)


@pytest.mark.parametrize("penalty", [1.0, 0.25])
@pytest.mark.parametrize("name", GAME_NAMES)
def test_noop_mode_keeps_the_state_and_truncates_at_max_steps(name, penalty):
    env = wrapped(name, on_invalid="noop", penalty=penalty)
    observation, _ = env.reset(seed=0, options=PINNED[name])
    view = env.unwrapped.view()
    max_steps = env.unwrapped.max_steps
    for step in range(1, max_steps + 1):
        new_observation, reward, terminated, truncated, info = env.step(GARBAGE)
        np.testing.assert_array_equal(new_observation, observation)
        assert env.unwrapped.view() == view
        assert reward == -penalty
        assert info["action"] is None
        assert info["invalid_action"] is False
        assert info["format_errors"] == step
        assert not terminated
        assert truncated == (step == max_steps)


def test_noop_steps_count_toward_the_step_limit():
    env = wrapped("ezpoints", on_invalid="noop")
    env.reset(seed=0, options={"cards": ["6H", "2S"]})
    flags = []
    for text in [GARBAGE, reply("+"), GARBAGE, reply("+"), GARBAGE, reply("+"), reply("+")]:
        _, _, terminated, truncated, _ = env.step(text)
        flags.append((terminated, truncated))
    # four entries only, so the game itself would go on: the wrapper ends it at 7 steps
    assert flags == [(False, False)] * 6 + [(False, True)]
    assert len(env.unwrapped.formula) == 4


def test_noop_then_valid_action_continues():
    env = wrapped("numberline", on_invalid="noop")
    env.reset(options={"target": 3, "current": 1})
    env.step(GARBAGE)
    _, reward, terminated, _, info = env.step(reply("+"))
    assert (reward, terminated, info["action"]) == (0.0, False, 1)
    _, reward, terminated, _, _ = env.step(reply("+"))
    assert (reward, terminated) == (1.0, True)


# ----------------------------------------------------------------------------- prompts


@pytest.mark.parametrize("on_invalid", ["random", "noop"])
@pytest.mark.parametrize("name", GAME_NAMES)
def test_every_info_carries_the_prompt(name, on_invalid):
    env = wrapped(name, on_invalid=on_invalid)
    _, info = env.reset(seed=2)
    infos = [info]
    texts = [GARBAGE, reply(env.unwrapped.task.action_names[0])]
    for i in range(12):
        _, _, terminated, truncated, info = env.step(texts[i % 2])
        infos.append(info)
        if terminated or truncated:
            infos.append(env.reset()[1])
    for info in infos:
        assert isinstance(info["prompt"], str) and '"action"' in info["prompt"]


@pytest.mark.parametrize(
    ("name", "presses", "shown"),
    [
        ("ezpoints", ["2", "*"], "2 *"),
        ("ezpoints", ["6", "6", "+"], "6 +"),  # the blank of the second 6 is not shown
        ("points24", ["(", "8", "/", "3"], "( 8 / 3"),
    ],
)
def test_formula_prompt_shows_the_current_formula(name, presses, shown):
    env = wrapped(name, on_invalid="noop")
    _, info = env.reset(options=PINNED[name])
    assert "The current formula is: (empty)" in info["prompt"]
    for press in presses:
        _, _, _, _, info = env.step(reply(press))
    assert f"The current formula is: {shown}\n" in info["prompt"]
    _, _, _, _, info = env.step(GARBAGE)  # a no-op keeps showing it
    assert f"The current formula is: {shown}\n" in info["prompt"]


@pytest.mark.parametrize("name", GAME_NAMES)
def test_cot_false_prompt_asks_for_the_action_only(name):
    with_cot = wrapped(name, cot=True).reset(seed=0)[1]["prompt"]
    without = wrapped(name, cot=False).reset(seed=0)[1]["prompt"]
    assert '"thoughts"' in with_cot
    assert "thoughts" not in without
    assert '"action"' in without
    for key in COT_KEYS[name]:
        assert f'"{key}"' in with_cot
        assert f'"{key}"' not in without


# ----------------------------------------------------------------------------- expert replies


def visited_views(name: str, seeds: int, epsilon: float = 0.3):
    """Views of epsilon-random expert play: the states demonstrations are made of."""
    env = rlvlm.make(name, image_size=SMALL)
    task = env.unwrapped.task
    rng = np.random.default_rng(0)
    for seed in range(seeds):
        env.reset(seed=seed)
        done = False
        while not done:
            view = env.unwrapped.view()
            yield task, view
            if rng.random() < epsilon:
                action = int(rng.integers(env.action_space.n))
            else:
                action = task.oracle_action(view)
            _, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated


SEEDS = {"numberline": 40, "ezpoints": 30, "points24": 12, "blackjack": 40}


@pytest.mark.parametrize("name", GAME_NAMES)
def test_replies_parse_back_to_their_action(name):
    states = 0
    for task, view in visited_views(name, SEEDS[name]):
        states += 1
        oracle = task.oracle_action(view)
        assert task.parse(task.reply(view, oracle)).action == oracle
        for action in range(len(task.action_names)):
            text = task.reply(view, action)
            assert task.parse(text).action == action, text
            fields = json.loads(text)
            assert list(fields) == [*COT_KEYS[name], "action"]
            assert fields["action"] == task.action_names[action]

            short = task.reply(view, action, cot=False)
            assert json.loads(short) == {"action": task.action_names[action]}
            assert task.parse(short).action == action
    assert states > SEEDS[name]


@pytest.mark.parametrize("name", GAME_NAMES)
def test_reply_thoughts_are_truthful(name):
    for task, view in visited_views(name, 10):
        fields = json.loads(task.reply(view, task.oracle_action(view)))
        if name == "numberline":
            assert (fields["current number"], fields["target number"]) == (
                view.current,
                view.target,
            )
        elif name in ("ezpoints", "points24"):
            assert fields["cards"] == [card.value for card in view.cards]
            assert fields["current formula"] == format_formula(view.formula)
        else:
            total, _ = hand_total(view.player)
            visible, _ = hand_total([view.dealer_up])
            cards = " + ".join(str(card.value) for card in view.player)
            assert f"I have {cards} = " in fields["thoughts"]
            assert f"= {total}," in fields["thoughts"] or f"soft {total}," in fields["thoughts"]
            assert f"counts {visible}" in fields["thoughts"]


def test_random_fallback_is_independent_of_the_deal():
    by_up_card: dict[bool, set] = {True: set(), False: set()}
    for seed in range(200):
        env = wrapped("blackjack", on_invalid="random")
        env.reset(seed=seed)
        low = env.unwrapped.dealer[0].value <= 6 and env.unwrapped.dealer[0].rank != "A"
        by_up_card[low].add(env.step(GARBAGE)[4]["action"])
    assert by_up_card[True] == by_up_card[False] == {0, 1}


def test_noop_observation_is_a_fresh_array():
    env = wrapped("numberline", on_invalid="noop")
    observation, _ = env.reset(seed=0)
    expected = observation.copy()
    observation[:] = 0
    again, *_ = env.step(GARBAGE)
    np.testing.assert_array_equal(again, expected)


# ----------------------------------------------------------------------------- history


def test_history_recalls_the_last_actions_in_order_and_forgets_at_reset():
    env = wrapped("numberline", history=2)
    plain = wrapped("numberline")
    options = {"target": 4, "current": 1}
    _, info = env.reset(seed=0, options=options)
    _, plain_info = plain.reset(seed=0, options=options)
    assert info["prompt"] == plain_info["prompt"]  # nothing to recall yet
    for action in ("+", "+", "-"):
        _, _, _, _, info = env.step(reply(action))
        _, _, _, _, plain_info = plain.step(reply(action))
    before, recalled = info["prompt"].split("Your last 2 steps, oldest first:\n")
    # Only the actions: the picture shows the state, and a text of it would tell the model
    # what it should read.
    assert recalled == '1. Action: "+"\n2. Action: "-"\n' + plain_info["prompt"][len(before) :]
    _, info = env.reset(seed=0, options=options)
    _, plain_info = plain.reset(seed=0, options=options)
    assert info["prompt"] == plain_info["prompt"]


def test_history_names_a_no_op_and_zero_steps_recall_nothing():
    from rlvlm.games.wrappers import NO_ACTION

    env = wrapped("numberline", history=1, on_invalid="noop")
    env.reset(seed=3)
    _, _, _, _, info = env.step(GARBAGE)
    assert f"Your last step:\n1. Action: {json.dumps(NO_ACTION)}\n" in info["prompt"]
    silent = wrapped("numberline")
    silent.reset(seed=3)
    _, _, _, _, info = silent.step(reply("+"))
    assert "Your last" not in info["prompt"] and not silent.history
    with pytest.raises(ValueError, match="history must be 0 or more"):
        wrapped("numberline", history=-1)


def test_demonstrations_and_evaluations_show_the_history(tmp_path):
    from rlvlm.evaluation.episodes import run_episodes
    from rlvlm.evaluation.policies import OraclePolicy
    from rlvlm.sft.data import load_demonstrations, write_demonstrations

    write_demonstrations("ezpoints", 3, tmp_path, image_size=SMALL, history=1)
    prompts = [d.prompt for d in load_demonstrations(tmp_path)]
    assert "Your last step" not in prompts[0] and "Your last step" in prompts[1]
    played = run_episodes(
        "ezpoints", OraclePolicy(), 2, history=1, env_kwargs={"image_size": SMALL}, record=2
    )
    assert "Your last step" in played[0].steps[1].prompt
