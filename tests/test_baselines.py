"""The CNN + RL baseline: SB3 PPO on the pictures, judged on the same held-out deals."""

import json
import tempfile

import numpy as np
import pytest

from rlvlm.baselines.cnn import IMAGE_SIZE, CnnPlayer, CnnSettings, train_cnn
from rlvlm.evaluation.episodes import run_episodes
from rlvlm.games import make

SMALL = dict(steps=256, num_envs=2, n_steps=32, batch_size=32, eval_every=2, eval_episodes=12)


class _Fixed:
    """An SB3-like model that always predicts one action."""

    def __init__(self, action):
        self.action = action

    def predict(self, images, deterministic):
        assert deterministic and images.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE, 3)
        return np.full(len(images), self.action), None


def test_the_player_takes_its_predicted_action_in_an_action_only_reply():
    game = make("numberline").unwrapped
    episodes = run_episodes(
        "numberline",
        CnnPlayer(_Fixed(1)),
        4,
        cot=False,
        env_kwargs={"image_size": IMAGE_SIZE},
        record=4,
    )
    for episode in episodes:
        assert episode.format_errors == 0
        assert {step.action_name for step in episode.steps} == {game.task.action_names[1]}
        assert all("thoughts" not in step.reply for step in episode.steps)


def test_a_run_writes_its_curve_and_result_and_is_not_redone(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    settings = CnnSettings("ezpoints", seed=3, **SMALL)
    result = train_cnn(settings, tmp_path, log=lambda _: None)
    assert not list(scratch.glob("SB3-*"))  # SB3's default logger would leave a folder there
    curve = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # Rollouts of 64 steps (2 envs x 32): an evaluation after the second update (at the
    # third rollout's start) and one after the last.
    assert [point["global_step"] for point in curve] == [128, 256]
    assert result["env_steps"] == 256 and result["episodes"] == 12
    assert result["success_rate"] == curve[-1]["eval/success_rate"]
    assert result["peak_success_rate"] == max(p["eval/success_rate"] for p in curve)
    assert result["format_error_rate"] == 0.0 and result["policy"] == "cnn"
    assert json.loads((tmp_path / "eval.json").read_text()) == result
    assert (tmp_path / "model.zip").is_file()
    # Finished: read back, not trained again; other settings there are refused.
    (tmp_path / "model.zip").unlink()
    assert train_cnn(settings, tmp_path, log=lambda _: None) == result
    assert not (tmp_path / "model.zip").exists()
    with pytest.raises(ValueError, match="a finished run with other settings"):
        train_cnn(CnnSettings("ezpoints", seed=4, **SMALL), tmp_path)


def test_the_same_seed_gives_the_same_run(tmp_path):
    settings = CnnSettings("numberline", seed=1, **SMALL)
    first = train_cnn(settings, tmp_path / "a", log=lambda _: None)
    second = train_cnn(settings, tmp_path / "b", log=lambda _: None)
    drop = ("train_seconds",)
    assert {k: v for k, v in first.items() if k not in drop} == {
        k: v for k, v in second.items() if k not in drop
    }


def test_training_deals_are_drawn_from_the_run_seed_below_the_held_out_range(monkeypatch, tmp_path):
    import gymnasium as gym

    from rlvlm.baselines import cnn
    from rlvlm.seeds import EVAL_SEED_BASE

    seeds = []

    class Recorded(gym.Wrapper):
        def reset(self, *, seed=None, options=None):
            if seed is not None:
                seeds.append(seed)
            return self.env.reset(seed=seed, options=options)

    monkeypatch.setattr(cnn, "make", lambda game, **kwargs: Recorded(make(game, **kwargs)))
    blocks = {}
    for run_seed in (0, 1):
        seeds.clear()
        settings = CnnSettings("numberline", seed=run_seed, **SMALL | {"steps": 64})
        cnn.train_cnn(settings, tmp_path / str(run_seed), log=lambda _: None)
        blocks[run_seed] = list(seeds)
    for block in blocks.values():  # one block of consecutive seeds per run, trained on only
        assert block == list(range(block[0], block[0] + 2)) and block[-1] < EVAL_SEED_BASE
    assert not set(blocks[0]) & set(blocks[1])


def test_the_defaults_are_the_tiny_configs_ppo_stage():
    from rlvlm.config import load_config

    tiny = load_config("tiny/ezpoints")
    resolved = CnnSettings("ezpoints").resolved()
    assert resolved.steps == tiny.ppo.updates * tiny.ppo.num_envs * tiny.ppo.steps_per_env
    assert (resolved.num_envs, resolved.n_steps) == (tiny.ppo.num_envs, tiny.ppo.steps_per_env)
    assert (resolved.eval_every, resolved.eval_episodes) == (tiny.eval.every, tiny.eval.episodes)
    with pytest.raises(ValueError, match=r"must be a multiple of a rollout's 16 envs x 16 steps"):
        CnnSettings("ezpoints", steps=1000).resolved()


def test_settings_refuse_games_and_sizes_it_cannot_play():
    with pytest.raises(ValueError, match="not 'alfworld'"):
        CnnSettings("alfworld")
    with pytest.raises(ValueError, match="num_envs must be 1 or more"):
        CnnSettings("numberline", num_envs=0)
