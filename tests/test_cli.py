"""The rlvlm command: its output, its files and its errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rlvlm import GAMES
from rlvlm.cli import main
from rlvlm.games import CARD_GAMES

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


def test_games_lists_and_renders_every_game(tmp_path, capsys):
    assert main(["games", "--render", str(tmp_path), "--image-size", "64"]) == 0
    out = capsys.readouterr().out
    for game in GAMES.values():
        assert game.name in out and game.env_id in out
        picture = np.asarray(Image.open(tmp_path / f"{game.name}.png"))
        assert picture.shape == (64, 64, 3) and picture.std() > 10


def test_eval_writes_the_result_json(tmp_path, capsys):
    out_file = tmp_path / "sub" / "result.json"
    args = ["eval", "--game", "ezpoints", "--policy", "oracle", "--episodes", "20"]
    assert main([*args, "--out", str(out_file)]) == 0
    result = json.loads(out_file.read_text())
    assert set(result) >= RESULT_KEYS
    assert result["success_rate"] == 1.0 and result["episodes"] == 20
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["game", "policy", "episodes"]
    assert table[1].split()[:4] == ["ezpoints", "oracle", "20", "100.0%"]
    assert not list(tmp_path.glob("sub/.*.tmp")), "the atomic write left a temporary file"


def test_eval_same_seed_same_result_other_seed_other_deals(tmp_path):
    def run(seed: int, name: str) -> dict:
        path = tmp_path / name
        args = ["eval", "--game", "blackjack", "--policy", "random", "--episodes", "60"]
        main([*args, "--seed", str(seed), "--out", str(path)])
        return json.loads(path.read_text())

    assert run(3, "a.json") == run(3, "b.json")
    assert run(3, "a.json") != run(4, "c.json")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--game", "chess", "--policy", "oracle"], "invalid choice: 'chess'"),
        (["eval", "--game", "numberline", "--policy", "genius"], "choose from oracle, random"),
        (["eval", "--game", "numberline", "--policy", "oracle", "--episodes", "0"], "positive"),
        (["eval", "--game", "numberline", "--policy", "oracle", "--seed", "-1"], "0 or more"),
        (["eval", "--game", "numberline", "--policy", "oracle", "--out", "."], "is a directory"),
        (
            ["eval", "--game", "numberline", "--policy", "oracle", "--out", "/proc/no/r.json"],
            "argument --out: cannot write /proc/no",
        ),
        (
            ["eval", "--game", "numberline", "--policy", "oracle", "--replays", "/proc/no"],
            "argument --replays: cannot write /proc/no",
        ),
        (["games", "--image-size", "8"], "at least 32"),
        (["bench", "gpus"], "invalid choice: 'gpus'"),
        (["bench", "scale"], "bench scale needs --arch"),
        (["bench", "scale", "--arch", "gpt-2"], "unknown architecture 'gpt-2'"),
        (["baseline", "cnn", "--game", "alfworld"], "invalid choice: 'alfworld'"),
        (["baseline", "cnn", "--game", "ezpoints", "--steps", "1000"], "multiple of a rollout"),
        (
            ["eval", "--game", "numberline", "--policy", "oracle", "--split", "valid_seen"],
            "only alfworld has splits",
        ),
        (["fly"], "invalid choice: 'fly'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(argv, message):
    done = subprocess.run([sys.executable, "-m", "rlvlm", *argv], capture_output=True, text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""  # found before any work: nothing was played or printed


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--game", "numberline", "--policy", "genius"],
        ["eval", "--game", "numberline", "--policy", "oracle", "--split", "valid_seen"],
        ["bench", "scale", "--arch", "gpt-2"],
    ],
)
def test_a_bad_name_fails_before_torch_loads(argv):
    # torch and transformers take seconds to import: a typo should not wait for them.
    script = (
        "import sys\nfrom rlvlm.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True)
    assert "error:" in done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_bench_envs_prints_each_game_beside_its_baseline(capsys):
    from rlvlm.bench import bench_envs

    rows = bench_envs(seconds=0.05)
    assert [row["game"] for row in rows] == list(CARD_GAMES)
    assert all(row["steps_per_s"] > 0 and row["uncached_steps_per_s"] > 0 for row in rows)
    out = capsys.readouterr().out
    assert "uncached" in out and all(name in out for name in CARD_GAMES)


def test_bench_rollout_prints_both_modes_and_their_ratio(capsys):
    from rlvlm.bench import bench_rollout

    figures = bench_rollout(envs=2, rounds=2, max_new_tokens=4)
    assert figures["batched"] > 0 and figures["one_at_a_time"] > 0
    assert figures["ratio"] == pytest.approx(figures["batched"] / figures["one_at_a_time"])
    out = capsys.readouterr().out
    assert "batched" in out and "one at a time" in out and "over 2 rounds" in out


def test_bench_train_times_one_update_beside_the_reference_way(capsys):
    from rlvlm.bench import bench_train

    small = [
        "ppo.num_envs=2",
        "ppo.steps_per_env=2",
        "ppo.minibatch_size=2",
        "ppo.max_new_tokens=4",
        "ppo.epochs=1",
    ]
    figures = bench_train(overrides=small)
    assert figures["seconds"] > 0 and figures["reference_seconds"] > 0
    assert figures["ratio"] == pytest.approx(figures["reference_seconds"] / figures["seconds"])
    out = capsys.readouterr().out
    assert "minibatch 2 x accumulation 1" in out and "minibatch 1 x accumulation 2" in out
    assert out.strip().splitlines()[-1].startswith("optimisation is ")
    assert main(["bench", "train", "ppo.epochs=0"]) == 2
    assert "ppo.epochs must be at least 1" in capsys.readouterr().err


def test_an_unsupported_checkpoint_and_an_unwritable_cache_are_one_line_errors(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    cases = [
        (["eval", "--game", "numberline", "--policy", str(tmp_path)], {}, "unsupported model"),
        (
            ["pretrain", "--games", "numberline", "--steps", "1"],
            {"RLVLM_CACHE": str(tmp_path / "config.json" / "x")},
            "cannot write the vision cache",
        ),
    ]
    for argv, env, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "rlvlm", *argv],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr
