"""Configs: the shipped files, the paper's settings, key=value overrides and their errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rlvlm.config import (
    DEFAULT_CONFIG,
    TrainConfig,
    config_names,
    default_config_name,
    load_config,
    to_yaml,
)
from rlvlm.games import GAMES

CARD_GAMES = ["numberline", "ezpoints", "points24", "blackjack"]


def test_every_game_has_a_paper_and_a_tiny_config_and_each_loads():
    names = config_names()
    for game in GAMES:
        for group in ("paper", "tiny"):
            assert f"{group}/{game}" in names
    for name in names:
        config = load_config(name)
        assert config.game in GAMES
        assert load_config(name) == config


@pytest.mark.parametrize("game", [*CARD_GAMES, "alfworld"])
def test_paper_configs_hold_the_papers_hyperparameters(game):
    config = load_config(f"paper/{game}")
    ppo, model = config.ppo, config.model
    alfworld = game == "alfworld"
    assert (ppo.gamma, ppo.gae_lambda) == (0.9, 0.95)
    assert (ppo.clip_coef, ppo.epochs, ppo.vf_coef, ppo.max_grad_norm) == (0.1, 4, 0.5, 0.01)
    assert (ppo.lr, ppo.lr_min) == (1e-5, 1e-9)
    assert (ppo.minibatch_size, ppo.grad_accum) == (1, 256 if alfworld else 128)
    assert (ppo.temperature, ppo.max_new_tokens) == (0.2, 256)
    assert ppo.thought_coef == (0.2 if alfworld else 0.5)
    transitions = ppo.num_envs * ppo.steps_per_env
    assert transitions == (512 if game in ("numberline", "blackjack") else 1024)
    budget = ppo.updates * transitions  # environment steps
    assert budget == pytest.approx(5000 if alfworld else 15000, rel=0.1)
    assert (model.lora, model.lora_rank, model.lora_alpha, model.lora_dropout) == (
        True,
        128,
        256,
        0.05,
    )
    assert set(model.lora_parts) == {"vision", "projector", "language"}
    assert ppo.ent_coef == 0 and ppo.kl_coef == 0  # options, off as in the paper
    assert config.eval.episodes == (1000 if game == "blackjack" else 200)


def test_the_default_is_the_tiny_numberline_config(tmp_path):
    assert DEFAULT_CONFIG == "tiny/numberline"
    assert default_config_name(None, None) == "tiny/numberline"
    assert default_config_name("blackjack", "tiny-llava") == "tiny/blackjack"
    assert default_config_name("ezpoints", "/models/llava") == "paper/ezpoints"
    checkpoint = tmp_path / "sft"  # trained from a tiny preset: still tiny
    checkpoint.mkdir()
    (checkpoint / "rlvlm.json").write_text(json.dumps({"base": "tiny-llava-alfworld"}))
    assert default_config_name("alfworld", str(checkpoint)) == "tiny/alfworld"
    (checkpoint / "rlvlm.json").write_text(json.dumps({"base": "/models/llava"}))
    assert default_config_name("alfworld", str(checkpoint)) == "paper/alfworld"
    # A save cut off mid-swap: the old checkpoint is read from its backup, as load_policy does.
    (checkpoint / "rlvlm.json").write_text(json.dumps({"base": "tiny-llava-alfworld"}))
    checkpoint.rename(tmp_path / ".sft.previous")
    assert default_config_name("alfworld", str(checkpoint)) == "tiny/alfworld"


def test_overrides_are_typed_like_the_field():
    config = load_config(
        "tiny/numberline",
        [
            "ppo.lr=1e-4",
            "ppo.updates=3",
            "ppo.cot=false",
            "model.freeze=[vision, projector]",
            "sft.data=null",
            "name=7",
            "ppo.value_lr=0.01",
        ],
    )
    assert config.ppo.lr == 1e-4 and isinstance(config.ppo.lr, float)
    assert config.ppo.updates == 3 and config.ppo.cot is False
    assert config.model.freeze == ["vision", "projector"]
    assert config.sft.data is None and config.name == "7"
    assert config.ppo.value_lr == 0.01


def test_a_config_survives_writing_and_reading(tmp_path):
    config = load_config("paper/points24", ["ppo.lr=3e-6", "seed=4"])
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(config))
    assert load_config(path) == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ppo.lrr=1", r"unknown config key 'ppo\.lrr'; valid keys: .*ppo\.lr,"),
        ("nope=1", r"unknown config key 'nope'"),
        ("ppo.updates=many", r"ppo\.updates must be int"),
        ("ppo.updates=-1", r"ppo\.updates must be 0 \(SFT only\) or more"),
        ("ppo.vector=threads", r"ppo\.vector must be one of sync, async"),
        ("model.freeze=[eyes]", r"unknown parts \['eyes'\]"),
        ("ppo.top_p=0.9", r"ppo\.top_p must be 1: training scores the whole distribution"),
        ("game=chess", r"unknown game 'chess'"),
        ("env.history=-1", r"env\.history must be 0 or more"),
        ("ppo.group_size=3", r"ppo\.group_size \(3\) must divide ppo\.num_envs \(16\)"),
        ("ppo.advantage=grpo", r"set ppo\.group_size to 2 or more"),
        ("ppo.lr", r"key=value"),
    ],
)
def test_bad_overrides_are_clear_errors(override, message):
    with pytest.raises(ValueError, match=message):
        load_config("tiny/numberline", [override])


def test_sft_only_needs_sft():
    assert load_config("tiny/numberline", ["ppo.updates=0"]).ppo.updates == 0
    with pytest.raises(ValueError, match=r"ppo\.updates=0 \(SFT only\) needs SFT"):
        load_config("tiny/numberline", ["ppo.updates=0", "sft.episodes=0"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "ppo.nope=1"], "unknown config key 'ppo.nope'"),
        (["train", "--config", "tiny/chess"], "tiny/chess"),
        (["train", "--resume", "/nonexistent/run"], "not a run directory"),
        (["train", "--out", "/proc/rlvlm", "vision.steps=0"], "cannot make the run directory"),
        (
            [
                "sft",
                "--game",
                "numberline",
                "--data",
                "/nonexistent",
                "--model",
                "tiny-llava",
                "--out",
                "/tmp/x",
            ],
            "/nonexistent",
        ),
        (["train", "sft.data=/nonexistent"], "sft.data: no demonstrations at /nonexistent"),
    ],
)
def test_the_training_commands_bad_input_is_one_line_and_exit_code_2(tmp_path, argv, message):
    """Found before any work: nothing is cached, so a tiny preset's vision stage never began."""
    env = os.environ | {"RLVLM_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "rlvlm", *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert not (tmp_path / "cache").exists()
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and message in lines[0], done.stderr


def test_a_model_that_cannot_load_is_refused_before_the_run_directory_is_made(tmp_path):
    argv = ["train", "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "runs")]
    done = subprocess.run([sys.executable, "-m", "rlvlm", *argv], capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "neither a preset" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_a_dataclass_default_config_is_the_papers():
    config = TrainConfig()
    assert config.ppo.lr == 1e-5 and config.ppo.clip_coef == 0.1 and config.model.lora


def test_a_config_is_built_and_checked_without_torch():
    """So that the command line's config errors come at once, not after torch has loaded, and a
    report or an experiment's table is made without it."""
    code = (
        "import sys\n"
        "from rlvlm.config import load_config\n"
        "from rlvlm.layout import new_run_dir\n"
        "import rlvlm.report, rlvlm.experiment\n"
        "new_run_dir(load_config('tiny/ezpoints', ['model.freeze=[vision]']))\n"
        "heavy = {'torch', 'transformers', 'accelerate'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_config_names_the_presets_the_models_build():
    from rlvlm.config import TINY_PRESETS
    from rlvlm.models import PRESETS

    assert tuple(PRESETS) == TINY_PRESETS
