"""ALFWorld on the alfworld package's engine: generation, rewards, the parser, the pipeline."""

from __future__ import annotations

import json
import warnings
from collections import Counter

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlvlm
from rlvlm.cli import main
from rlvlm.evaluation import OraclePolicy, RandomPolicy, run_episodes, summarize
from rlvlm.games.alfworld import generate
from rlvlm.games.alfworld.env import ALFWorldView, canonical_command, game_files
from rlvlm.games.wrappers import TextActions
from rlvlm.sft.data import load_demonstrations, write_demonstrations

GAMES_PER_TYPE = 1  # every task type once: 6 games, about 15 s on an idle machine


@pytest.fixture(autouse=True)
def no_official_data(monkeypatch, tmp_path_factory):
    """Generated games unless a test points ALFWORLD_DATA at a suite."""
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path_factory.getbasetemp() / "no-data"))


def make(**kwargs):
    return rlvlm.make("alfworld", image_size=kwargs.pop("image_size", 64), **kwargs)


# -------------------------------------------------------------------------------- generation


def test_generation_is_deterministic_per_seed():
    first = generate.generate_game(5, "train")
    assert first == generate.generate_game(5, "train")
    assert first.game["pddl_problem"] != generate.generate_game(6, "train").game["pddl_problem"]
    seen = generate.generate_game(5, "valid_seen")
    assert seen.game["pddl_problem"] != first.game["pddl_problem"]


def test_every_task_type_appears_and_splits_keep_their_rooms():
    games = [generate.generate_game(seed, "train") for seed in range(40)]
    assert set(Counter(g.task_type for g in games)) == set(generate.TASK_TYPES)
    rooms = {g.traj_data["scene"]["scene_num"] for g in games}
    assert len(rooms) > 15 and not rooms & set(generate.UNSEEN_FLOOR_PLANS)
    unseen = {
        generate.generate_game(s, "valid_unseen").traj_data["scene"]["scene_num"] for s in range(12)
    }
    assert unseen <= set(generate.UNSEEN_FLOOR_PLANS) and len(unseen) > 1
    with pytest.raises(ValueError, match="train, valid_seen, valid_unseen"):
        generate.generate_game(0, "test")


def test_a_suite_of_a_game_per_type_every_one_won_by_the_expert(tmp_path, monkeypatch):
    """One test, so that parallel workers make the suite once: `rlvlm alfworld generate`'s
    tree, a game of each type, the expert winning each through the env, and the env
    playing the suite through ALFWORLD_DATA (and passing gymnasium's checks there)."""
    generate.write_suite(tmp_path, GAMES_PER_TYPE * len(generate.TASK_TYPES), "valid_unseen")
    files = game_files(tmp_path / "json_2.1.1", "valid_unseen")
    game = json.loads(files[0].read_text())
    assert set(game) == {"pddl_domain", "grammar", "pddl_problem", "solvable"}
    assert "UNKNOWN GOAL" not in game["grammar"]

    env = make()
    won = Counter()
    for path in files:
        _, info = env.reset(seed=0, options={"game_file": str(path)})
        while True:
            action = env.unwrapped.task.oracle_action(env.unwrapped.view())
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        assert info["won"], path.parent.parent.name
        won[info["task_type"]] += 1
    assert won == dict.fromkeys(generate.TASK_TYPES, GAMES_PER_TYPE)

    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    env = make(split="valid_unseen")
    assert env.unwrapped.data_dir == tmp_path / "json_2.1.1"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    goals = {
        json.loads(p.read_text())["grammar"].split("Your task is to: ")[1].split(".")[0]
        for p in files
    }
    assert env.reset(seed=3)[1]["task"] in goals


# --------------------------------------------------------------------------------- the env


def test_same_seed_replays_and_info():
    env = make()
    first, info = env.reset(seed=1)
    again, info_again = env.reset(seed=1)
    assert np.array_equal(first, again) and info == info_again
    assert info["task_type"] in generate.TASK_TYPES and info["won"] is False
    assert info["admissible_commands"] == list(env.unwrapped.view().admissible)
    assert "Your task is to" in info["observation"]


def test_reward_shaping_on_a_scripted_episode():
    env = make(task_type="pick_and_place_simple", max_steps=50)
    game = env.unwrapped
    env.reset(seed=2)
    progress, rewards = [], []
    while True:
        view = game.view()
        command_index = game.task.oracle_action(view)
        _, reward, terminated, truncated, info = env.step(command_index)
        rewards.append(reward)
        progress.append(info["goal_condition_success_rate"])
        if terminated or truncated:
            break
    assert terminated and info["won"]
    # One goal condition (the object in the receptacle): met only at the last step.
    assert progress[:-1] == [0.0] * (len(progress) - 1) and progress[-1] == 1.0
    assert rewards == [0.0] * (len(rewards) - 1) + [51.0]


def test_an_inadmissible_action_costs_one_and_changes_nothing():
    env = make(task_type="pick_heat_then_place_in_recep")
    game = env.unwrapped
    env.reset(seed=4)
    for _ in range(12):  # far enough that the expert holds the object: progress is shown
        if game.view().holding:
            break
        env.step(game.task.oracle_action(game.view()))
    before = game.view()
    _, reward, terminated, truncated, info = env.step(len(before.admissible) + 3)
    assert info["invalid_action"] and info["observation"] == "Nothing happens."
    assert reward == pytest.approx(info["goal_condition_success_rate"] - 1.0)
    assert game.view().admissible == before.admissible and game.view().holding == before.holding
    assert not (terminated or truncated)
    with pytest.raises(ValueError):
        env.step(-1)


def test_the_step_limit_truncates():
    env = make(max_steps=3)
    env.reset(seed=1)
    look = env.unwrapped.view().admissible.index("look")
    ends = [env.step(look)[2:4] for _ in range(3)]
    assert ends == [(False, False), (False, False), (False, True)]


def test_the_picture_shows_the_situation():
    env = make(image_size=300)
    game = env.unwrapped
    first, _ = env.reset(seed=1)
    assert first.shape == (300, 300, 3) and first.std() > 10
    go = next(i for i, c in enumerate(game.view().admissible) if c.startswith("go to "))
    after, *_ = env.step(go)
    assert game.view().at and not np.array_equal(first, after)


# ------------------------------------------------------------------------------- the parser

ADMISSIBLE = (
    "examine countertop 1",
    "go to cabinet 1",
    "go to cabinet 10",
    "help",
    "inventory",
    "look",
    "move apple 1 to countertop 1",
    "take mug 2 from countertop 1",
)


def view_with(admissible=ADMISSIBLE) -> ALFWorldView:
    return ALFWorldView(
        "put some apple on countertop",
        "pick_and_place_simple",
        "",
        tuple(admissible),
        ("cabinet 1", "countertop 1"),
        "countertop 1",
        False,
        ("mug 2",),
        "apple 1",
        "look",
    )


@pytest.mark.parametrize(
    ("reply", "command"),
    [
        (
            '{"thoughts": "I hold the apple.", "action": "move apple 1 to countertop 1"}',
            "move apple 1 to countertop 1",
        ),
        ("```json\n{'thoughts': 'x', 'action': 'Go to Cabinet 10.'}\n```", "go to cabinet 10"),
        ('{"thoughts": "...", "action": "go to cabinet 1"}', "go to cabinet 1"),
        ('{"action": "put the apple 1 on the countertop 1"}', "move apple 1 to countertop 1"),
        ('{"action": "pick up mug 2 from countertop 1"}', "take mug 2 from countertop 1"),
        ('{"action": "I will take mug 2 from countertop 1 now"}', "take mug 2 from countertop 1"),
        ('{"action": "  LOOK  "}', "look"),
        ('{"thoughts": "then go to cabinet 10", "action": "go to cabinet 10', "go to cabinet 10"),
        ("thoughts: cabinets first\naction: go to cabinet 1", "go to cabinet 1"),
    ],
)
def test_the_parser_reads_noisy_replies(reply, command):
    task = make().unwrapped.task
    parsed = task.parse(reply, view_with())
    assert parsed.valid and ADMISSIBLE[parsed.action] == command


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ('{"action": "go to cabinet 2"}', "not an admissible action"),
        ('{"action": "go to cabinet 1 or go to cabinet 10"}', "several actions"),
        ('{"thoughts": "I should look"}', "no action key"),
        ('{"action": ""}', "empty action"),
        ('{"action": "look", "action": "help"}', "conflicting action keys"),
        ("x" * 100_000, "no action key"),
    ],
)
def test_the_parser_says_why_a_reply_names_no_admissible_action(reply, reason):
    parsed = make().unwrapped.task.parse(reply, view_with())
    assert not parsed.valid and parsed.reason.startswith(reason)


def test_canonical_commands_keep_object_names():
    assert canonical_command("go to the drawer 2") == "go to drawer 2"
    assert canonical_command("place a cd 1 onto desk 1") == "move cd 1 to desk 1"


# ---------------------------------------------------------------------- the shared pipeline


def test_text_actions_plays_by_reply_and_counts_format_errors():
    env = TextActions(make(), on_invalid="noop")
    _, info = env.reset(seed=1)
    assert "admissible actions" in info["prompt"] and '"thoughts"' in info["prompt"]
    _, reward, *_, info = env.step('{"action": "fly to the moon"}')
    assert info["format_error"] and reward == -1.0 and info["format_errors"] == 1
    _, _, _, _, info = env.step('{"action": "look"}')
    assert not info["format_error"] and info["action"] == info["admissible_commands"].index("look")


def test_oracle_and_random_policies_through_run_episodes():
    oracle = run_episodes(
        "alfworld", OraclePolicy(), 2, batch_size=2, env_kwargs={"image_size": 64}
    )
    assert all(e.won and e.success for e in oracle)
    assert {e.task_type for e in oracle} <= set(generate.TASK_TYPES)
    summary = summarize(oracle, "alfworld", "oracle")
    assert summary["per_task"]
    assert summary["thought_accuracy"] == 1.0
    assert summary["fact_accuracy"] == {"location": 1.0, "holding": 1.0}
    random = run_episodes(
        "alfworld", RandomPolicy(0), 1, env_kwargs={"image_size": 64, "max_steps": 5}
    )
    assert random[0].format_errors == 0 and random[0].length == 5


def test_a_reply_that_misstates_what_it_holds_has_one_false_fact():
    env = make()
    env.reset(seed=0)
    game = env.unwrapped
    truth = game.task.reply(game.view(), 0)
    assert "I hold nothing." in truth
    wrong = truth.replace("I hold nothing.", "I hold apple 1.")
    assert game.task.check_thoughts(wrong, game.view()) == {"location": True, "holding": False}


def test_demonstrations_are_the_experts_with_chain_of_thought(tmp_path):
    summary = write_demonstrations("alfworld", 1, tmp_path, image_size=64)
    assert summary.success_rate == 1.0
    demos = load_demonstrations(tmp_path)
    assert len(demos) == summary.steps > 1
    replies = [json.loads(d.reply) for d in demos]
    assert all(set(r) == {"thoughts", "action"} and r["thoughts"] for r in replies)
    assert replies[0]["action"] == "look"  # the expert starts as the package's does
    assert all(r["action"] in d.prompt for r, d in zip(replies, demos, strict=True))


def test_cli_generate_writes_a_suite(tmp_path, capsys):
    assert (
        main(
            [
                "alfworld",
                "generate",
                "--out",
                str(tmp_path),
                "--games",
                "2",
                "--split",
                "valid_seen",
            ]
        )
        == 0
    )
    assert len(game_files(tmp_path / "json_2.1.1", "valid_seen")) == 2
    assert "ALFWORLD_DATA=" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main(["alfworld", "generate", "--out", str(tmp_path), "--games", "1", "--split", "x"])
    assert stop.value.code == 2


# ---------------------------------------------------------------------- the tiny preset's text


def test_the_shipped_corpus_is_what_its_writer_writes():
    from itertools import islice

    from rlvlm.games.alfworld.corpus import alfworld_lines
    from rlvlm.models.tokenizer import alfworld_corpus

    written = list(alfworld_lines(games=2))  # the first two of the shipped corpus's games
    assert len(written) == len(set(written)) > 100
    assert list(islice(alfworld_corpus(), len(written))) == written


def test_the_alfworld_preset_reads_unseen_rooms_in_far_fewer_tokens_and_fits_them():
    from rlvlm.models import load_policy
    from rlvlm.models.presets import llava_tokenizer

    env = TextActions(make(split="valid_unseen", image_size=84), history=3)
    image, info = env.reset(seed=5)
    game = env.unwrapped
    recalled = []
    for _ in range(3):
        view = game.view()
        command = view.admissible[game.task.oracle_action(view)]
        recalled.append(f"Observation: {game.task.feedback(view)} Action: {json.dumps(command)}")
        image, _, _, _, info = env.step(game.task.reply(view, game.task.oracle_action(view)))
    # Each step as the agent met it: the engine's text, then the command it chose there.
    block = "".join(f"{i}. {line}\n" for i, line in enumerate(recalled, 1))
    assert f"Your last 3 steps, oldest first:\n{block}Your response should be" in info["prompt"]
    policy = load_policy("tiny-llava-alfworld")
    cards_only = len(llava_tokenizer()(info["prompt"])["input_ids"])
    own = len(policy.tokenizer(info["prompt"])["input_ids"])
    assert own < 0.6 * cards_only  # 510 against 1,001 here
    assert policy.context_length == 2048
    policy.generate([image], [info["prompt"]], max_new_tokens=4)  # within the context


def test_eval_plays_the_split_it_is_given(tmp_path, monkeypatch):
    from collections import OrderedDict

    from rlvlm.games.alfworld import env

    monkeypatch.setattr(env, "_GENERATED", OrderedDict())  # generate, not replay, each game
    splits = []
    real = generate.generate_game

    def recording(seed, split, *args, **kwargs):
        splits.append(split)
        return real(seed, split, *args, **kwargs)

    monkeypatch.setattr(generate, "generate_game", recording)
    args = ["eval", "--game", "alfworld", "--policy", "oracle", "--episodes", "1"]
    args += ["--image-size", "64"]
    assert main([*args, "--out", str(tmp_path / "unseen.json")]) == 0
    assert main([*args, "--split", "valid_seen", "--out", str(tmp_path / "seen.json")]) == 0
    assert splits == ["valid_unseen", "valid_seen"]
