"""Tests for evaluation: Wilson intervals, summaries, held-out seeds, episode runs and policies."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import rlvlm
from rlvlm.evaluation import (
    Episode,
    OraclePolicy,
    RandomPolicy,
    eval_seeds,
    load_replays,
    make_policy,
    run_episodes,
    save_replays,
    summarize,
    wilson_interval,
)
from rlvlm.evaluation.paper import comparison_table, paper_rows, versus
from rlvlm.seeds import EVAL_SEED_BASE

GAME_NAMES = list(rlvlm.games.CARD_GAMES)  # ALFWorld: tests/test_alfworld.py
SMALL = {"image_size": 64}
Z95 = 1.959964

# ----------------------------------------------------------------------------- Wilson


def wilson_by_hand(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson bounds in counts form: (k + z²/2 ± z √(k(n-k)/n + z²/4)) / (n + z²)."""
    centre = k + z * z / 2
    spread = z * math.sqrt(k * (n - k) / n + z * z / 4)
    return (centre - spread) / (n + z * z), (centre + spread) / (n + z * z)


@pytest.mark.parametrize(
    ("k", "n", "known"),
    [
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (5, 10, (0.2366, 0.7634)),
        (8, 10, (0.4902, 0.9433)),
        (81, 100, (0.7222, 0.8749)),
        (0, 1, (0.0, 0.7935)),
    ],
)
def test_wilson_interval_known_values(k, n, known):
    low, high = wilson_interval(k, n)
    assert (low, high) == pytest.approx(wilson_by_hand(k, n), abs=1e-4)
    assert (low, high) == pytest.approx(known, abs=1e-4)
    assert 0.0 <= low <= k / n <= high <= 1.0


@pytest.mark.parametrize(("k", "n"), [(10, 10), (0, 69)])
def test_wilson_interval_contains_a_perfect_or_null_rate(k, n):
    low, high = wilson_interval(k, n)
    assert low <= k / n <= high


def test_wilson_interval_edges_and_symmetry():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for n in (1, 7, 50):
        for k in range(n + 1):
            low, high = wilson_interval(k, n)
            mirror_low, mirror_high = wilson_interval(n - k, n)
            assert low == pytest.approx(1 - mirror_high, abs=1e-12)
            assert high == pytest.approx(1 - mirror_low, abs=1e-12)
    # more trials at the same rate give a narrower interval
    widths = [np.subtract(*wilson_interval(n // 2, n)[::-1]) for n in (10, 100, 1000)]
    assert widths[0] > widths[1] > widths[2]
    # a wider z gives a wider interval
    assert wilson_interval(5, 10, z=2.576)[0] < wilson_interval(5, 10)[0]


# ----------------------------------------------------------------------------- summarize

EPISODES = [
    Episode(seed=0, episode_return=1.0, length=3, format_errors=1, invalid_actions=0),
    Episode(seed=1, episode_return=0.0, length=10, format_errors=0, invalid_actions=2),
    Episode(seed=2, episode_return=-1.0, length=5, format_errors=2, invalid_actions=1),
    Episode(seed=3, episode_return=10.0, length=2, format_errors=0, invalid_actions=0),
]

RESULT_KEYS = {
    "game",
    "policy",
    "episodes",
    "success_rate",
    "success_ci95",
    "mean_return",
    "std_return",
    "mean_length",
    "format_error_rate",
    "invalid_action_rate",
    "per_task",
}


@pytest.mark.parametrize(
    ("episode_return", "success"), [(10.0, True), (0.5, True), (0.0, False), (-1.0, False)]
)
def test_episode_success_is_a_positive_return(episode_return, success):
    assert Episode(0, episode_return, 1, 0, 0).success is success


def test_a_game_that_says_whether_it_was_won_decides_success():
    """ALFWorld pays its goal-condition term every step: a lost episode can end above 0."""
    assert Episode(0, 12.5, 50, 0, 0, won=False).success is False
    assert Episode(0, 50.0, 9, 0, 0, won=True).success is True


def test_summarize_hand_made_episodes():
    result = summarize(EPISODES, "numberline", "oracle")
    assert set(result) >= RESULT_KEYS
    assert (result["game"], result["policy"], result["episodes"]) == ("numberline", "oracle", 4)
    assert result["success_rate"] == 0.5  # the 0-return episode is a failure
    assert result["success_ci95"] == pytest.approx(list(wilson_interval(2, 4)))
    assert result["mean_return"] == pytest.approx(2.5)
    assert result["std_return"] == pytest.approx(np.std([1.0, 0.0, -1.0, 10.0]))
    assert result["mean_length"] == pytest.approx(5.0)
    assert result["format_error_rate"] == pytest.approx(3 / 20)  # per step, not per episode
    assert result["invalid_action_rate"] == pytest.approx(3 / 20)
    assert result["per_task"] == {}
    assert json.loads(json.dumps(result)) == result


def test_summarize_all_failures():
    episodes = [Episode(i, 0.0, 4, 4, 0) for i in range(3)]
    result = summarize(episodes, "blackjack", "random")
    assert result["success_rate"] == 0.0
    assert result["success_ci95"][0] == 0.0
    assert result["format_error_rate"] == 1.0


def test_summarize_groups_by_task_type():
    episodes = [
        Episode(0, 60.0, 10, 0, 0, task_type="pick"),
        Episode(1, -3.0, 50, 1, 3, task_type="pick"),
        Episode(2, 55.0, 20, 0, 1, task_type="clean"),
        Episode(3, 0.0, 5, 0, 0),  # no task type: counted overall only
    ]
    result = summarize(episodes, "alfworld", "oracle")
    assert list(result["per_task"]) == ["clean", "pick"]
    pick, clean = result["per_task"]["pick"], result["per_task"]["clean"]
    assert (pick["episodes"], pick["success_rate"]) == (2, 0.5)
    assert pick["mean_length"] == 30.0
    assert pick["invalid_action_rate"] == pytest.approx(3 / 60)
    assert (clean["episodes"], clean["success_rate"]) == (1, 1.0)
    assert result["episodes"] == 4 and result["success_rate"] == 0.5
    assert RESULT_KEYS - {"game", "policy", "per_task"} <= set(pick)


def test_summarize_refuses_no_episodes():
    with pytest.raises(ValueError, match="no episodes"):
        summarize([], "numberline", "oracle")


# ----------------------------------------------------------------------------- seeds


def test_eval_seeds_are_held_out_and_disjoint():
    runs = [eval_seeds(1000, seed) for seed in range(4)]
    for seeds in runs:
        assert len(seeds) == len(set(seeds)) == 1000
        assert min(seeds) >= EVAL_SEED_BASE  # training seeds stay below
    for a in range(4):
        for b in range(a + 1, 4):
            assert not set(runs[a]) & set(runs[b])
    assert eval_seeds(5, 2)[:3] == eval_seeds(3, 2)  # more episodes extend the same deals


@pytest.mark.parametrize(
    ("episodes", "seed", "match"),
    [(0, 0, "episodes"), (-1, 0, "episodes"), (2**20 + 1, 0, "episodes"), (5, -1, "seed")],
)
def test_eval_seeds_refuses_bad_arguments(episodes, seed, match):
    with pytest.raises(ValueError, match=match):
        eval_seeds(episodes, seed)


# ----------------------------------------------------------------------------- run_episodes


@pytest.mark.parametrize("name", GAME_NAMES)
def test_run_episodes_is_in_seed_order_and_independent_of_batch_size(name):
    runs = {
        batch: run_episodes(name, OraclePolicy(), 15, seed=3, batch_size=batch, env_kwargs=SMALL)
        for batch in (1, 7, 16)
    }
    for episodes in runs.values():
        assert [episode.seed for episode in episodes] == eval_seeds(15, seed=3)
    assert runs[1] == runs[7] == runs[16]


def test_run_episodes_numberline_oracle_takes_the_shortest_path():
    episodes = run_episodes("numberline", OraclePolicy(), 20, batch_size=6, env_kwargs=SMALL)
    env = rlvlm.make("numberline", **SMALL)
    for episode in episodes:
        env.reset(seed=episode.seed)
        distance = abs(env.unwrapped.target - env.unwrapped.current)
        assert episode.length == distance
        assert episode.episode_return == 1.0
        assert (episode.format_errors, episode.invalid_actions) == (0, 0)


class GarblePolicy:
    """Replies with nothing a parser can read."""

    name = "garble"

    def replies(self, turns):
        return ["I would rather not say."] * len(turns)


@pytest.mark.parametrize("name", GAME_NAMES)
def test_run_episodes_counts_format_errors_in_noop_mode(name):
    episodes = run_episodes(
        name, GarblePolicy(), 5, on_invalid="noop", batch_size=3, env_kwargs=SMALL
    )
    max_steps = rlvlm.make(name, **SMALL).unwrapped.max_steps
    for episode in episodes:
        assert episode.length == max_steps
        assert episode.format_errors == max_steps
        assert episode.episode_return == -max_steps
        assert episode.invalid_actions == 0
    assert summarize(episodes, name, "garble")["format_error_rate"] == 1.0


@pytest.mark.parametrize("name", GAME_NAMES)
def test_run_episodes_counts_format_errors_in_random_mode(name):
    episodes = run_episodes(name, GarblePolicy(), 8, batch_size=4, env_kwargs=SMALL)
    for episode in episodes:
        assert episode.format_errors == episode.length >= 1
        assert episode.invalid_actions == 0  # the fallback only takes legal actions


def test_run_episodes_counts_invalid_actions():
    episodes = run_episodes("points24", RandomPolicy(0), 30, env_kwargs=SMALL)
    assert sum(episode.invalid_actions for episode in episodes) > 0
    assert all(episode.format_errors == 0 for episode in episodes)


# ----------------------------------------------------------------------------- policies


def test_make_policy():
    assert isinstance(make_policy("oracle"), OraclePolicy)
    assert isinstance(make_policy("random", seed=3), RandomPolicy)
    with pytest.raises(
        ValueError, match=r"unknown policy 'nope'; choose from oracle, random, tiny-llava"
    ):
        make_policy("nope")


def test_random_policy_is_seeded():
    def play(seed: int) -> list[Episode]:
        return run_episodes("blackjack", RandomPolicy(seed), 30, batch_size=5, env_kwargs=SMALL)

    assert play(1) == play(1)
    assert play(1) != play(2)


# ----------------------------------------------------------------------------- recording


def test_run_episodes_records_the_first_episodes_turn_by_turn():
    recorded = run_episodes(
        "numberline", OraclePolicy(), 6, batch_size=4, env_kwargs=SMALL, record=2
    )
    assert recorded == run_episodes("numberline", OraclePolicy(), 6, env_kwargs=SMALL)
    task = rlvlm.make("numberline").unwrapped.task
    for episode in recorded[:2]:
        assert len(episode.steps) == episode.length
        assert sum(step.reward for step in episode.steps) == episode.episode_return
        assert all(not (s.terminated or s.truncated) for s in episode.steps[:-1])
        assert episode.steps[-1].terminated
        assert episode.final_image.shape == (64, 64, 3)
        for step in episode.steps:
            assert step.image.shape == (64, 64, 3) and "number line" in step.prompt
            assert task.parse(step.reply).action == step.action
            assert step.action_name == task.action_names[step.action]
            assert (step.parse_reason, step.format_error, step.invalid_action) == ("ok", 0, 0)
        # each turn's picture is the state the reply was written for
        pictures = [step.image for step in episode.steps] + [episode.final_image]
        assert all((a != b).any() for a, b in itertools.pairwise(pictures))
    assert all(episode.steps == () and episode.final_image is None for episode in recorded[2:])


def test_recorded_format_errors_say_why():
    episodes = run_episodes(
        "blackjack", GarblePolicy(), 2, on_invalid="noop", env_kwargs=SMALL, record=1
    )
    step = episodes[0].steps[0]
    assert step.reply == "I would rather not say."
    assert step.format_error and step.action is None and step.action_name is None
    assert step.parse_reason != "ok" and step.reward == -1.0


def test_save_and_load_replays(tmp_path):
    episodes = run_episodes("ezpoints", OraclePolicy(), 5, env_kwargs=SMALL, record=3)
    path = save_replays(episodes, tmp_path / "replays", game="ezpoints", policy="oracle")
    saved = load_replays(tmp_path / "replays")
    assert path == tmp_path / "replays" / "replays.json"
    assert (saved["game"], saved["policy"], len(saved["episodes"])) == ("ezpoints", "oracle", 3)
    for transcript, episode in zip(saved["episodes"], episodes, strict=False):
        assert transcript["seed"] == episode.seed and transcript["success"] is True
        assert transcript["episode_return"] == episode.episode_return
        assert [step["reply"] for step in transcript["steps"]] == [s.reply for s in episode.steps]
        names = [step["image"] for step in transcript["steps"]] + [transcript["final_image"]]
        for name, image in zip(
            names, [*(s.image for s in episode.steps), episode.final_image], strict=True
        ):
            assert np.array_equal(np.asarray(Image.open(tmp_path / "replays" / name)), image)
    # a second save replaces the first; nothing recorded saves nothing
    save_replays(episodes[:1], tmp_path / "replays", game="ezpoints", policy="oracle")
    assert len(load_replays(tmp_path / "replays")["episodes"]) == 1
    assert len(list((tmp_path / "replays").glob("episode-01-*"))) == 0
    unrecorded = run_episodes("ezpoints", OraclePolicy(), 2, env_kwargs=SMALL)
    assert save_replays(unrecorded, tmp_path / "none", game="ezpoints", policy="oracle") is None
    assert load_replays(tmp_path / "none") is None


# ----------------------------------------------------------------------------- the paper


def test_paper_rows_and_comparison():
    rows = dict(paper_rows("numberline"))
    assert rows["paper (LLaVA-1.6-7B + PPO)"] == 0.894 and rows["GPT-4V"] == 0.655
    assert "later work (Qwen-VL, group-relative RL)" not in dict(paper_rows("blackjack"))
    assert [versus(0.894, ci) for ci in ([0.9, 1.0], [0.8, 0.9], [0.5, 0.6])] == [
        "below",
        "within",
        "above",
    ]
    result = summarize(EPISODES, "numberline", "my-policy")
    table = comparison_table(result).splitlines()
    assert "Table 2" in table[0]
    assert table[2].split()[:2] == ["my-policy", "50.0%"]
    assert any(line.split()[-2:] == ["89.4%", "above"] for line in table)
    assert len(table) == 3 + len(rows)


def test_eval_prints_per_task_rows(capsys):
    from rlvlm.cli import _print_result

    result = summarize(
        [Episode(0, 60.0, 10, 0, 0, task_type="pick"), Episode(1, -3.0, 5, 1, 0, "clean")],
        "alfworld",
        "oracle",
    )
    _print_result(result)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4  # header, overall, then one row per task type
    assert lines[1].split()[:4] == ["alfworld", "oracle", "2", "50.0%"]
    assert lines[2].split()[:3] == ["clean", "1", "0.0%"]
    assert lines[3].split()[:3] == ["pick", "1", "100.0%"]


def test_eval_table_columns_stay_aligned_with_a_long_policy_name(capsys):
    from rlvlm.cli import _print_result

    episodes = [Episode(0, 1.0, 3, 0, 0), Episode(1, -1.0, 4, 0, 0)]
    _print_result(summarize(episodes, "numberline", "runs/numberline-20261203-064100/sft"))
    header, row = capsys.readouterr().out.splitlines()
    assert row.index("50.0%") == header.index("success")
    assert row.index(" 2 ") + 1 == header.index("episodes")


def test_eval_compare_paper_and_replays(tmp_path, capsys):
    from rlvlm.cli import REPLAY_EPISODES, main

    replays = tmp_path / "replays"
    args = [
        "eval",
        "--game",
        "blackjack",
        "--policy",
        "oracle",
        "--episodes",
        "12",
        "--image-size",
        "64",
        "--compare-paper",
        "--replays",
        str(replays),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Table 2" in out and "40.2%" in out and "Gemini" in out
    assert len(load_replays(replays)["episodes"]) == REPLAY_EPISODES < 12


# ----------------------------------------------------------------------- thought accuracy


@pytest.mark.parametrize("name", GAME_NAMES)
def test_the_oracles_thoughts_are_all_true(name):
    summary = summarize(run_episodes(name, OraclePolicy(), 12, env_kwargs=SMALL), name, "oracle")
    assert summary["thought_accuracy"] == 1.0
    assert set(summary["fact_accuracy"].values()) == {1.0}


def test_replies_without_thoughts_have_no_thought_accuracy():
    episodes = run_episodes("numberline", OraclePolicy(), 4, cot=False, env_kwargs=SMALL)
    summary = summarize(episodes, "numberline", "oracle")
    assert "thought_accuracy" not in summary and "fact_accuracy" not in summary


# A hand-made reply per game with exactly one fact wrong, on the deal of reset seed 7.
ONE_WRONG_FACT = {
    "numberline": ('{"current number": 3, "target number": 4, "action": "+"}', "target number"),
    "ezpoints": ('{"cards": [10, 2], "current formula": "10 +", "action": "2"}', "current formula"),
    "points24": ('{"cards": [10, 9, 8, 9], "current formula": "", "action": "8"}', "cards"),
    "blackjack": (
        '{"thoughts": "I have 8 + 10 = 17, and the dealer\'s visible card counts 10.", '
        '"action": "stand"}',
        "player total",
    ),
}


@pytest.mark.parametrize("name", GAME_NAMES)
def test_a_reply_with_one_wrong_fact(name):
    env = rlvlm.make(name, **SMALL)
    env.reset(seed=7)
    game = env.unwrapped
    reply, wrong = ONE_WRONG_FACT[name]
    check = game.task.check_thoughts(reply, game.view())
    assert [fact for fact, true in check.items() if not true] == [wrong]
    truth = game.task.reply(game.view(), game.task.oracle_action(game.view()))
    assert all(game.task.check_thoughts(truth, game.view()).values())
    assert not any(game.task.check_thoughts('{"action": "+"}', game.view()).values())


def test_an_untrained_preset_states_almost_nothing_true():
    torch.manual_seed(0)
    untrained = make_policy("tiny-llava", max_new_tokens=48)
    summary = summarize(run_episodes("numberline", untrained, 8, batch_size=8), "numberline", "x")
    assert summary["thought_accuracy"] <= 0.05
