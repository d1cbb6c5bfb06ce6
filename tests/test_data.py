"""Demonstration data: the files, the truthfulness of the replies, reading them back, the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlvlm import progress
from rlvlm.cli import main
from rlvlm.config import load_config
from rlvlm.games import make
from rlvlm.games.numberline import MINUS, PLUS, NumberLineTask, NumberLineView
from rlvlm.seeds import EVAL_SEED_BASE
from rlvlm.sft import (
    Demonstration,
    demonstration_seeds,
    load_demonstrations,
    write_demonstrations,
)
from rlvlm.sft.data import check_written_for

SIZE = 48  # the smallest pictures that keep the tests quick and the digits drawn


def records(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "data.jsonl").read_text().splitlines()]


def test_a_line_is_a_llava_conversation_and_its_image_is_the_observation(tmp_path):
    summary = write_demonstrations("numberline", 3, tmp_path, image_size=SIZE, seed=5)
    assert summary.path == tmp_path / "data.jsonl" and summary.episodes == 3
    lines = records(tmp_path)
    assert len(lines) == summary.steps

    first = lines[0]
    assert set(first) == {"id", "image", "conversations"}
    assert first["id"] == "numberline-000000-00"
    assert first["image"] == "images/numberline-000000-00.png"
    human, gpt = first["conversations"]
    assert human["from"] == "human" and gpt["from"] == "gpt"

    env = make("numberline", image_size=SIZE)
    observation, _ = env.reset(seed=demonstration_seeds(3, seed=5)[0])
    task, view = env.unwrapped.task, env.unwrapped.view()
    assert human["value"] == "<image>\n" + task.prompt(view)
    assert gpt["value"] == task.reply(view, task.oracle_action(view))
    saved = np.asarray(Image.open(tmp_path / first["image"]).convert("RGB"))
    np.testing.assert_array_equal(saved, observation)
    assert all((tmp_path / line["image"]).is_file() for line in lines)

    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta == {
        "game": "numberline",
        "episodes": 3,
        "steps": summary.steps,
        "epsilon": 0.0,
        "seed": 5,
        "image_size": SIZE,
        "cot": True,
        "history": 0,
        "expert_success_rate": 1.0,
    }
    assert not list(tmp_path.glob(".*.tmp")), "the atomic write left a temporary file"


def test_training_seeds_stay_below_the_held_out_ones():
    seeds = demonstration_seeds(1000, seed=3)
    assert all(0 <= s < EVAL_SEED_BASE for s in seeds)
    assert seeds == demonstration_seeds(1000, seed=3) != demonstration_seeds(1000, seed=4)


def test_the_same_seed_writes_the_same_data(tmp_path):
    def data(name: str, seed: int) -> str:
        write_demonstrations(
            "blackjack", 8, tmp_path / name, epsilon=0.3, seed=seed, image_size=SIZE
        )
        return (tmp_path / name / "data.jsonl").read_text()

    assert data("a", 1) == data("b", 1) != data("c", 2)
    pictures = sorted(p.name for p in (tmp_path / "a" / "images").iterdir())
    for name in pictures:
        a, b = (tmp_path / run / "images" / name for run in ("a", "b"))
        assert a.read_bytes() == b.read_bytes()


def numberline_steps(directory: Path) -> list[tuple[NumberLineView, int]]:
    """Each recorded step's state, read back from its reply, and the action the reply names."""
    task = NumberLineTask()
    steps = []
    for line in records(directory):
        reply = line["conversations"][1]["value"]
        fields = json.loads(reply)
        view = NumberLineView(fields["target number"], fields["current number"])
        parsed = task.parse(reply)
        assert parsed.valid, reply
        steps.append((view, parsed.action))
    return steps


def test_epsilon_0_takes_only_the_experts_actions(tmp_path):
    summary = write_demonstrations("numberline", 20, tmp_path, image_size=SIZE)
    task = NumberLineTask()
    assert all(action == task.oracle_action(view) for view, action in numberline_steps(tmp_path))
    assert summary.success_rate == 1.0


def test_epsilon_1_takes_both_actions_and_the_replies_stay_truthful(tmp_path):
    write_demonstrations("numberline", 20, tmp_path, epsilon=1.0, image_size=SIZE)
    steps = numberline_steps(tmp_path)
    assert {action for _, action in steps} == {MINUS, PLUS}
    task = NumberLineTask()
    assert any(action != task.oracle_action(view) for view, action in steps)

    # The state a reply states is the true one: replay each episode and compare.
    env = make("numberline", image_size=SIZE)
    lines, position = records(tmp_path), 0
    for seed in demonstration_seeds(20):
        env.reset(seed=seed)
        done = False
        while not done:
            view, action = steps[position]
            assert view == env.unwrapped.view(), lines[position]["id"]
            _, _, terminated, truncated, _ = env.step(action)
            done, position = terminated or truncated, position + 1
    assert position == len(steps)


def test_without_cot_a_reply_is_the_action_alone(tmp_path):
    write_demonstrations("ezpoints", 2, tmp_path, cot=False, image_size=SIZE)
    for line in records(tmp_path):
        assert set(json.loads(line["conversations"][1]["value"])) == {"action"}
        assert '"thoughts"' not in line["conversations"][0]["value"]


def test_what_is_written_loads_back(tmp_path):
    summary = write_demonstrations("points24", 2, tmp_path, image_size=SIZE)
    demonstrations = load_demonstrations(tmp_path)
    assert len(demonstrations) == summary.steps
    for demonstration, line in zip(demonstrations, records(tmp_path), strict=True):
        assert isinstance(demonstration, Demonstration)
        assert demonstration.id == line["id"]
        assert demonstration.image.shape == (SIZE, SIZE, 3)
        assert demonstration.image.dtype == np.uint8
        assert "<image>" not in demonstration.prompt
        assert "<image>\n" + demonstration.prompt == line["conversations"][0]["value"]
        assert demonstration.reply == line["conversations"][1]["value"]
    assert [d.id for d in load_demonstrations(tmp_path / "data.jsonl", limit=2)] == [
        d.id for d in demonstrations[:2]
    ]


def test_other_tools_llava_files_load_too(tmp_path):
    Image.new("L", (40, 30), 128).save(tmp_path / "grey.png")  # not RGB, not square
    turns = [{"from": "human", "value": "<image>What now?"}, {"from": "gpt", "value": "Stand."}]
    line = {"image": "grey.png", "conversations": turns}  # no id
    (tmp_path / "data.jsonl").write_text(json.dumps(line) + "\n\n")
    [demonstration] = load_demonstrations(tmp_path)
    assert demonstration.prompt == "What now?" and demonstration.reply == "Stand."
    assert demonstration.id == "line-1" and demonstration.image.shape == (30, 40, 3)


def test_bad_settings_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match=r"epsilon must be a probability from 0 to 1"):
        write_demonstrations("numberline", 1, tmp_path, epsilon=1.5)
    with pytest.raises(ValueError, match=r"unknown game 'chess'; choose from numberline"):
        write_demonstrations("chess", 1, tmp_path)
    with pytest.raises(ValueError, match=r"episodes must be 1 or more"):
        write_demonstrations("numberline", 0, tmp_path)
    assert not (tmp_path / "data.jsonl").exists()


def good_line(tmp_path: Path) -> dict:
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    turns = [{"from": "human", "value": "<image>\nhi"}, {"from": "gpt", "value": "{}"}]
    return {"id": "a", "image": "a.png", "conversations": turns}


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "line 2: Expecting property name"),
        (json.dumps({"image": "gone.png", "conversations": []}), "line 2: expected one human"),
        ('["a list"]', "line 2: expected a JSON object"),
        ("{}", 'line 2: expected an "image" path'),
    ],
)
def test_a_malformed_line_is_named_by_its_number(tmp_path, bad_line, message):
    (tmp_path / "data.jsonl").write_text(json.dumps(good_line(tmp_path)) + "\n" + bad_line + "\n")
    with pytest.raises(ValueError, match=message) as error:
        load_demonstrations(tmp_path)
    assert "\n" not in str(error.value)


def test_a_missing_directory_an_empty_file_or_a_missing_image_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"data\.jsonl not found"):
        load_demonstrations(tmp_path / "nowhere")
    (tmp_path / "data.jsonl").write_text("\n")
    with pytest.raises(ValueError, match=r"no demonstrations in .*data\.jsonl: it is empty"):
        load_demonstrations(tmp_path)
    line = good_line(tmp_path)
    (tmp_path / "a.png").unlink()
    (tmp_path / "data.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(ValueError, match=r"line 1: image .*a\.png not found"):
        load_demonstrations(tmp_path)


def test_the_data_command_writes_a_directory(tmp_path, capsys):
    out = tmp_path / "demos"
    argv = ["data", "--game", "numberline", "--episodes", "4", "--out", str(out)]
    assert main([*argv, "--epsilon", "0.5", "--seed", "2", "--image-size", "32", "--no-cot"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and str(out / "data.jsonl") in printed[0]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["episodes"] == 4 and meta["epsilon"] == 0.5 and meta["seed"] == 2
    assert meta["image_size"] == 32 and meta["cot"] is False
    assert len(load_demonstrations(out)) == meta["steps"]


def test_progress_counts_each_episode_as_it_ends(tmp_path, monkeypatch, capsys):
    """Not once per chunk of episodes kept in memory: an ALFWorld chunk takes minutes."""
    monkeypatch.setattr(progress, "LINE_INTERVAL", 0.0)
    write_demonstrations("numberline", 3, tmp_path, image_size=SIZE, progress=True)
    counts = [line.split(" episodes")[0] for line in capsys.readouterr().err.splitlines()]
    assert counts == [f"numberline demonstrations: {n}/3" for n in (1, 2, 3)], counts


def test_the_data_command_defaults_to_the_tiny_presets_image_size(tmp_path):
    out = tmp_path / "demos"
    assert main(["data", "--game", "numberline", "--episodes", "1", "--out", str(out)]) == 0
    assert json.loads((out / "meta.json").read_text())["image_size"] == 84


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epsilon", "2"], "expected a probability from 0 to 1, got '2'"),
        (["--episodes", "0"], "positive"),
        (["--game", "chess"], "invalid choice: 'chess'"),
        (["--out", "{file}"], "argument --out: cannot write"),
    ],
)
def test_the_data_commands_bad_input_is_one_line_and_exit_code_2(tmp_path, extra, message):
    (tmp_path / "file").write_text("not a directory")
    argv = ["data", "--game", "numberline", "--episodes", "1", "--out", str(tmp_path / "x")]
    argv += [arg.format(file=tmp_path / "file") for arg in extra] + ["--image-size", "32"]
    done = subprocess.run([sys.executable, "-m", "rlvlm", *argv], capture_output=True, text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and message in lines[0], done.stderr


def test_data_written_for_another_prompt_game_or_history_is_refused(tmp_path):
    def run(*overrides: str):
        return load_config("tiny/numberline", list(overrides))

    write_demonstrations("numberline", 1, tmp_path, image_size=SIZE, cot=True, history=0)
    check_written_for(tmp_path, run())  # the run it was made for
    check_written_for(tmp_path / "data.jsonl", run())
    for overrides, named in [
        (["ppo.cot=false"], "ppo.cot=True where the run has False"),
        (["game=blackjack"], "game=numberline where the run has blackjack"),
        (["env.history=2"], "env.history=0 where the run has 2"),
    ]:
        with pytest.raises(ValueError, match=re.escape(named)):
            check_written_for(tmp_path, run(*overrides))

    meta = tmp_path / "meta.json"
    made = json.loads(meta.read_text())
    meta.write_text(json.dumps({k: v for k, v in made.items() if k != "history"}))
    with pytest.raises(
        ValueError, match=re.escape("env.history=0 where")
    ):  # older data: the default, 0
        check_written_for(tmp_path, run("env.history=2"))
    meta.write_text("{")
    with pytest.raises(ValueError, match=re.escape("meta.json")):
        check_written_for(tmp_path, run())
    meta.unlink()  # another tool's data: nothing to check it against
    check_written_for(tmp_path, run("game=blackjack", "ppo.cot=false", "env.history=2"))


@pytest.mark.parametrize("command", ["train", "sft"])
def test_training_on_data_made_for_another_prompt_stops_before_any_work(tmp_path, command):
    data = tmp_path / "data"
    write_demonstrations("numberline", 1, data, image_size=SIZE, cot=True)
    sft = ["sft", "--game", "numberline", "--data", str(data), "--model", "tiny-llava"]
    argv = {
        "train": ["train", "--out", str(tmp_path / "runs"), f"sft.data={data}"],
        "sft": [*sft, "--out", str(tmp_path / "sft")],
    }[command] + ["ppo.cot=false"]
    env = os.environ | {"RLVLM_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "rlvlm", *argv], capture_output=True, text=True, env=env
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "ppo.cot=True where the run has False" in lines[0]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()
