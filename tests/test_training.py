"""The PPO trainer end to end on the tiny model: updates that train, same seed same run,
resume after Ctrl-C, a NaN stop, crash-safe checkpoints, lambda's gradient, and two
data-parallel processes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from ddp_worker import one_update_two_ways
from safetensors.torch import load_file

from rlvlm import train
from rlvlm.cli import main
from rlvlm.config import load_config
from rlvlm.models import PRESETS, VLMPolicy, load_policy
from rlvlm.models.policy import Generation, Scores
from rlvlm.models.training import bf16_supported, deepspeed_settings
from rlvlm.rl import trainer as trainer_module
from rlvlm.rl.buffer import RolloutBuffer
from rlvlm.rl.checkpoints import Checkpoints
from rlvlm.rl.loss import ppo_loss
from rlvlm.rl.metrics import read_metrics
from rlvlm.rl.rollout import collect, make_envs
from rlvlm.rl.trainer import PPOTrainer, TrainingDiverged
from rlvlm.seeds import train_seeds
from rlvlm.sft import data as sft_data
from rlvlm.sft.data import write_demonstrations

ROOT = Path(__file__).resolve().parents[1]

#: A few seconds of PPO from the raw preset: just enough to exercise every moving part.
FAST = [
    "vision.steps=0",
    "sft.episodes=0",
    "model.name=tiny-llava",
    "ppo.updates=2",
    "ppo.num_envs=2",
    "ppo.steps_per_env=3",
    "ppo.epochs=2",
    "ppo.minibatch_size=2",
    "ppo.max_new_tokens=12",
    "eval.episodes=2",
    "eval.every=0",
    "checkpoint_every=1",
]

#: What every update logs (the issue's list, in the trainer's names).
LOGGED = [
    "charts/success_rate",
    "charts/episode_return",
    "charts/episode_length",
    "charts/format_error_rate",
    "charts/thought_logprob",
    "charts/action_logprob",
    "losses/policy_loss",
    "losses/value_loss",
    "losses/approx_kl",
    "losses/clipfrac",
    "losses/entropy",
    "losses/explained_variance",
    "charts/SPS",
    "charts/tokens_per_s",
    "charts/thought_accuracy",
    "charts/fact_accuracy/current number",
    "charts/fact_accuracy/target number",
]


def fast_run(tmp_path: Path, name: str, *overrides: str) -> tuple[Path, dict]:
    config = load_config("tiny/numberline", [*FAST, f"out={tmp_path}", f"name={name}", *overrides])
    run_dir = tmp_path / name
    return run_dir, train.run(config, run_dir, progress=False)


def untimed(rows: list[dict]) -> list[dict]:
    """Metric rows without the wall-clock figures, which differ from run to run."""
    timed = ("time/", "charts/SPS", "charts/tokens_per_s")
    return [{k: v for k, v in row.items() if not k.startswith(timed)} for row in rows]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_policy(path).state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, different[:5]


def last_checkpoint(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "update-000002"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted two-update run, with every rollout the trainer collected."""
    tmp_path = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as patch:
        rollouts = record_rollouts(patch)
        run_dir, result = fast_run(tmp_path, "reference")
    return run_dir, result, rollouts


def record_rollouts(patch: pytest.MonkeyPatch) -> list[dict]:
    """Keep the replies and rewards of each rollout the trainer collects."""
    rollouts: list[dict] = []
    collect = trainer_module.collect

    def recording(policy, envs, buffer, *args, **kwargs):
        stats = collect(policy, envs, buffer, *args, **kwargs)
        rollouts.append(
            {
                "reply_ids": buffer.reply_ids,
                "rewards": buffer.rewards.copy(),
                "terminated": buffer.terminated.copy(),
            }
        )
        return stats

    patch.setattr(trainer_module, "collect", recording)
    return rollouts


def test_a_few_updates_train_log_and_evaluate(reference_run):
    run_dir, result, _ = reference_run
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [row["update"] for row in rows] == [1, 2]
    for row in rows:
        missing = [key for key in LOGGED if key not in row]
        assert not missing, missing
        for key in ("losses/policy_loss", "losses/value_loss", "losses/approx_kl"):
            assert math.isfinite(row[key]), (key, row[key])
    assert result["episodes"] == 2 and 0 <= result["success_rate"] <= 1
    assert 0 <= result["thought_accuracy"] <= 1
    assert set(result["fact_accuracy"]) == {"current number", "target number"}
    assert (run_dir / "eval.json").is_file()
    assert any((run_dir / "tensorboard").iterdir())

    start, end = load_policy("tiny-llava", seed=0), load_policy(last_checkpoint(run_dir))
    trained = dict(end.named_parameters())
    changed = {"vision": 0, "projector": 0, "language": 0}
    for name, before in start.model.named_parameters():
        changed[start.family.part_of(name)] += not torch.equal(before, trained[f"model.{name}"])
    assert changed["language"] > 0 and changed["projector"] > 0
    assert changed["vision"] == 0  # the tiny config freezes the pretrained tower
    assert end.prompt == {"cot": True, "history": 0}  # as it was trained, for rlvlm eval
    head_before, head_after = start.value_head.state_dict(), end.value_head.state_dict()
    assert any(not torch.equal(head_before[k], head_after[k]) for k in head_before)


def test_the_same_seed_gives_the_same_run(reference_run, tmp_path, monkeypatch):
    reference_dir, _, reference_rollouts = reference_run
    rollouts = record_rollouts(monkeypatch)
    run_dir, _ = fast_run(tmp_path, "again")

    assert len(rollouts) == len(reference_rollouts) == 2
    for mine, theirs in zip(rollouts, reference_rollouts, strict=True):
        assert mine["reply_ids"] == theirs["reply_ids"]  # the replies, hence the actions
        assert (mine["rewards"] == theirs["rewards"]).all()
        assert (mine["terminated"] == theirs["terminated"]).all()
    assert untimed(read_metrics(run_dir / "metrics.jsonl")) == untimed(
        read_metrics(reference_dir / "metrics.jsonl")
    )  # the losses
    assert_same_weights(weights(last_checkpoint(run_dir)), weights(last_checkpoint(reference_dir)))


def _interrupt_after_first_update(patch: pytest.MonkeyPatch) -> None:
    optimize = PPOTrainer._optimize

    def optimize_then_ctrl_c(self, *args):
        metrics = optimize(self, *args)
        if self.update == 0:
            signal.raise_signal(signal.SIGINT)
        return metrics

    patch.setattr(PPOTrainer, "_optimize", optimize_then_ctrl_c)


def _interrupt_second_rollout(patch: pytest.MonkeyPatch) -> None:
    collect = trainer_module.collect
    calls = []

    def ctrl_c_then_collect(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the stop arrives before the rollout's first step
            signal.raise_signal(signal.SIGINT)
        return collect(*args, **kwargs)

    patch.setattr(trainer_module, "collect", ctrl_c_then_collect)


@pytest.mark.parametrize(
    "interrupt",
    [_interrupt_after_first_update, _interrupt_second_rollout],
    ids=["during-training", "during-rollout"],
)
def test_ctrl_c_saves_and_resume_continues_exactly(reference_run, tmp_path, interrupt):
    reference_dir = reference_run[0]
    with pytest.MonkeyPatch.context() as patch:
        interrupt(patch)
        run_dir, result = fast_run(tmp_path, "stopped")
    assert result["stopped_at_update"] == 1
    assert not (run_dir / "eval.json").exists()
    assert [row["update"] for row in read_metrics(run_dir / "metrics.jsonl")] == [1]

    _, result = fast_run(tmp_path, "stopped")  # the same run directory: resumes
    assert "stopped_at_update" not in result
    assert untimed(read_metrics(run_dir / "metrics.jsonl")) == untimed(
        read_metrics(reference_dir / "metrics.jsonl")
    )
    assert_same_weights(weights(last_checkpoint(run_dir)), weights(last_checkpoint(reference_dir)))


def test_a_lora_run_resumes_exactly_and_stores_only_what_it_trains(tmp_path):
    lora = ["model.lora=true", "model.lora_rank=4", "model.lora_alpha=8"]
    reference_dir, _ = fast_run(tmp_path, "reference", *lora)
    with pytest.MonkeyPatch.context() as patch:
        _interrupt_after_first_update(patch)
        run_dir, result = fast_run(tmp_path, "stopped", *lora)
    assert result["stopped_at_update"] == 1
    stored = load_file(
        run_dir / "checkpoints" / "update-000001" / "trainer_state" / "model.safetensors"
    )
    assert stored and all("lora_" in key or "value_head" in key for key in stored)
    meta = json.loads((run_dir / "checkpoints" / "update-000001" / "rlvlm.json").read_text())
    assert meta["lora"] and meta["prompt"] == {"cot": True, "history": 0}

    fast_run(tmp_path, "stopped", *lora)
    assert untimed(read_metrics(run_dir / "metrics.jsonl")) == untimed(
        read_metrics(reference_dir / "metrics.jsonl")
    )
    assert_same_weights(weights(last_checkpoint(run_dir)), weights(last_checkpoint(reference_dir)))


def test_an_sft_only_run_ends_with_its_sft_evaluation(tmp_path):
    run_dir, result = fast_run(tmp_path, "sft", "sft.episodes=2", "sft.epochs=1", "ppo.updates=0")
    sft = json.loads((run_dir / "sft_eval.json").read_text())
    assert result == json.loads((run_dir / "eval.json").read_text())
    assert result["success_rate"] == result["sft_success_rate"] == sft["success_rate"]
    assert result["episodes"] == sft["episodes"] == 2
    assert json.loads((run_dir / "sft" / "rlvlm.json").read_text())["prompt"]["cot"] is True
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.jsonl").exists()


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    loss = PPOTrainer._loss

    def nan_in_update_2(self, inputs, batch):
        parts = loss(self, inputs, batch)
        if self.update == 1:
            parts["loss"] = parts["loss"] * float("nan")
        return parts

    monkeypatch.setattr(PPOTrainer, "_loss", nan_in_update_2)
    with pytest.raises(TrainingDiverged, match=r"loss became nan in update 2.*last good"):
        fast_run(tmp_path, "nan")
    saved = Checkpoints(tmp_path / "nan" / "checkpoints", 2, None).saved()
    assert [update for update, _ in saved] == [1]
    load_policy(saved[0][1])  # intact


def test_a_crash_while_saving_leaves_the_previous_checkpoint_usable(tmp_path, monkeypatch):
    save = VLMPolicy.save
    calls = []

    def crash_on_second_save(self, path, *args, **kwargs):
        calls.append(path)
        save(self, path, *args, **kwargs)  # written in full, then the process "dies"
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(VLMPolicy, "save", crash_on_second_save)
    with pytest.raises(KeyboardInterrupt):
        fast_run(tmp_path, "crash")
    checkpoints = tmp_path / "crash" / "checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir() if path.is_dir()) == [
        ".update-000002.saving",
        "update-000001",
    ]
    monkeypatch.setattr(VLMPolicy, "save", save)
    _, result = fast_run(tmp_path, "crash")  # resumes from update 1
    assert result["episodes"] == 2
    assert [row["update"] for row in read_metrics(tmp_path / "crash" / "metrics.jsonl")] == [1, 2]


NO_FAST_BF16 = pytest.mark.skipif(
    not bf16_supported(torch.device("cpu")), reason="no bf16 units on this CPU: autocast stays off"
)


@pytest.mark.parametrize("bf16", [False, pytest.param(True, marks=NO_FAST_BF16)])
def test_the_first_minibatch_ratio_is_exactly_one(tmp_path, bf16):
    """The old log-probs and values are those of the training pass at the same weights, in
    float32 and under bf16 autocast alike (where sampling's own log-probs drift off)."""
    config = load_config("tiny/numberline", [*FAST, f"model.bf16={str(bf16).lower()}"])
    policy = train.prepare(load_policy("tiny-llava", seed=0), config)
    assert (policy.autocast_dtype is not None) == bf16
    trainer = PPOTrainer(config, policy, tmp_path, progress=False)
    envs = make_envs("numberline", 2, image_size=policy.image_size)
    buffer = RolloutBuffer(3, 2)
    torch.manual_seed(0)
    collect(policy, envs, buffer, [5, 6], thought_coef=0.5, temperature=1.0, max_new_tokens=12)
    envs.close()
    order = np.random.default_rng(0).permutation(6)
    inputs = policy.scoring_inputs(*buffer.transitions())
    trainer._rescore(buffer, inputs, order)
    buffer.compute_advantages(0.9, 0.95)
    first = next(buffer.minibatches(2, order))
    parts = trainer._loss(inputs.take(first.index), first)
    assert parts["approx_kl"].item() == 0.0 and parts["clipfrac"].item() == 0.0
    images, prompts, replies = ([items[i] for i in first.index] for items in buffer.transitions())
    scores = policy.score(images, prompts, replies)
    assert torch.equal(scores.logprob(0.5).detach().float(), first.old_logprobs)
    assert torch.equal(scores.values.detach().float(), first.old_values)


def test_cut_episodes_are_bootstrapped_from_their_last_observation(tmp_path):
    config = load_config("tiny/numberline", [*FAST, "model.bf16=false"])
    policy = train.prepare(load_policy("tiny-llava", seed=0), config)
    trainer = PPOTrainer(config, policy, tmp_path, progress=False)
    envs = make_envs("numberline", 2, image_size=policy.image_size)
    buffer = RolloutBuffer(3, 2)
    collect(policy, envs, buffer, [5, 6], thought_coef=0.5, temperature=1.0, max_new_tokens=12)
    envs.close()
    assert set(buffer.final_observations) >= {(2, 0), (2, 1)}  # the rollout's end cuts both
    trainer._rescore(buffer, policy.scoring_inputs(*buffer.transitions()), np.arange(6))
    for (t, e), (image, prompt) in buffer.final_observations.items():
        expected = policy.values([image], [prompt]).item()
        assert buffer.next_values[t, e] == pytest.approx(expected, abs=1e-5)


class ScriptedPolicy:
    """Writes the same reply for every environment (or environment i the i-th of a list), as
    ``VLMPolicy.generate`` hands it over."""

    def __init__(self, text: str | list[str]):
        self.text = text

    def generate(self, images, prompts, **sampling) -> Generation:
        n = len(prompts)
        zeros, ones = torch.zeros(n, 1), torch.ones(n, 1, dtype=torch.bool)
        scores = Scores(torch.zeros(n), zeros, ones, ones, ones.any(-1), zeros)
        texts = [self.text] * n if isinstance(self.text, str) else list(self.text)
        return Generation([[0]] * n, texts, scores)


@pytest.mark.parametrize(
    ("game", "reply", "on_invalid", "steps", "episodes", "format_errors"),
    [
        ("blackjack", '{"action": "stand"}', "random", 2, 8, 0),  # every hand ends each step
        ("numberline", "no idea", "noop", 10, 4, 40),  # every no-op episode hits its limit
    ],
)
def test_a_rollout_reads_the_steps_where_every_episode_ends(
    game, reply, on_invalid, steps, episodes, format_errors
):
    """When all environments end on one step, that step's infos exist only as final infos;
    the rollout counts its episodes and format errors all the same."""
    envs = make_envs(game, 4, image_size=84, on_invalid=on_invalid, penalty=0.5)
    buffer = RolloutBuffer(steps, 4)
    stats = collect(
        ScriptedPolicy(reply), envs, buffer, [1, 2, 3, 4], thought_coef=0.5, temperature=1.0
    )
    envs.close()
    assert len(stats.episode_returns) == episodes
    assert stats.format_errors == format_errors
    assert (buffer.terminated | buffer.truncated)[-1].all()
    if on_invalid == "noop":  # each unparsable reply costs the penalty and changes nothing
        assert (buffer.rewards == -0.5).all()
    # one thought check per reply, none true: the scripted replies state no facts
    assert len(stats.thought_checks) == steps * 4
    assert not any(true for check in stats.thought_checks for _, true in check)
    assert stats.cut_short(4, steps) is None


def test_a_rollout_shorter_than_its_episodes_is_flagged():
    """No-op NumberLine episodes run to their step limit, past a 3-step rollout's end."""
    envs = make_envs("numberline", 2, image_size=84, on_invalid="noop")
    stats = collect(
        ScriptedPolicy("no idea"),
        envs,
        RolloutBuffer(3, 2),
        [1, 2],
        thought_coef=0.5,
        temperature=1.0,
    )
    envs.close()
    assert stats.episode_lengths == []
    warning = stats.cut_short(2, 3)
    assert "2 environments x 3 steps ended only 0 episodes" in warning
    assert "ppo.steps_per_env" in warning


def test_grouped_environments_play_the_same_deals_however_they_play():
    """Two groups of two Blackjack tables; in each, one player hits and one stands, so their
    games draw different numbers of cards: the k-th hands of a group are dealt alike all
    the same, and the two groups' first deals differ."""
    replies = ['{"action": "hit"}', '{"action": "stand"}'] * 2
    envs = make_envs("blackjack", 4, image_size=84, group_size=2)
    buffer = RolloutBuffer(12, 4)
    seeds = train_seeds(0, 0, 0, 4, group_size=2)
    assert seeds[0] // 2 == seeds[1] // 2 != seeds[2] // 2 == seeds[3] // 2
    collect(ScriptedPolicy(replies), envs, buffer, seeds, thought_coef=0.5, temperature=1.0)
    envs.close()
    done = buffer.terminated | buffer.truncated
    deals = [
        [buffer.images[t][env] for t in range(12) if t == 0 or done[t - 1, env]] for env in range(4)
    ]
    for hitter, stander in [(0, 1), (2, 3)]:
        assert len(deals[hitter]) >= 3 and len(deals[stander]) == 12
        for k in range(len(deals[hitter])):
            assert np.array_equal(deals[hitter][k], deals[stander][k]), k
    assert not np.array_equal(deals[0][0], deals[2][0])


@pytest.mark.parametrize("advantage", ["grpo", "gigpo"])
def test_the_critic_free_estimators_train_the_policy_and_leave_the_value_head(tmp_path, advantage):
    group = [
        f"ppo.advantage={advantage}",
        "ppo.group_size=2",
        "game=blackjack",
        "ppo.num_envs=4",
        "ppo.steps_per_env=4",
        "ppo.updates=1",
    ]
    config = load_config("tiny/numberline", [*FAST, *group])
    policy = train.load_for_training("tiny-llava", config, Accelerator(cpu=True))
    start = {k: v.clone() for k, v in policy.state_dict().items()}
    trainer = PPOTrainer(config, policy, tmp_path / "run", progress=False)
    trainer.train()
    (row,) = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert "losses/value_loss" not in row and "losses/explained_variance" not in row
    assert math.isfinite(row["losses/policy_loss"])
    end = policy.state_dict()
    head = [key for key in start if key.startswith("value_head.")]
    assert head and all(torch.equal(start[key], end[key]) for key in head)
    assert any(not torch.equal(start[key], end[key]) for key in start if "language_model" in key)


def test_two_processes_with_one_seed_write_the_same_run(tmp_path):
    """Every stage, in two separate processes: the first trains the vision stage into an
    empty cache, the second reads it from there. Metrics (timings aside), evaluations and
    final weights come out identical."""
    overrides = [
        "vision.steps=4",
        "sft.episodes=2",
        "sft.epochs=1",
        "ppo.updates=1",
        "ppo.num_envs=2",
        "ppo.steps_per_env=2",
        "ppo.minibatch_size=2",
        "ppo.max_new_tokens=8",
        "eval.episodes=4",
        "eval.every=0",
    ]
    env = os.environ | {"RLVLM_CACHE": str(tmp_path / "cache")}
    runs = []
    for name in ("first", "second"):
        command = [
            sys.executable,
            "-m",
            "rlvlm",
            "train",
            "--out",
            str(tmp_path),
            f"name={name}",
            *overrides,
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        run_dir = tmp_path / name
        timed = ("time/", "charts/SPS", "charts/tokens_per_s")
        metrics = [
            {k: v for k, v in row.items() if not k.startswith(timed)}
            for row in read_metrics(run_dir / "metrics.jsonl")
        ]
        result = json.loads((run_dir / "eval.json").read_text())
        del result["wall_seconds"], result["policy"]  # the run's name is in the latter
        sft = json.loads((run_dir / "sft_eval.json").read_text())
        weights = load_policy(Checkpoints(run_dir / "checkpoints", 1, None).latest()).state_dict()
        runs.append((metrics, result, sft, weights))
    (metrics, result, sft, weights), again = runs
    assert metrics and metrics == again[0]
    assert result == again[1] and sft == again[2]
    assert weights.keys() == again[3].keys()
    assert all(torch.equal(weights[key], again[3][key]) for key in weights)


# ----------------------------------------------------------------------------- lambda


def _thought_and_action_gradients(thought_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """d loss / d log p(token) at ratio 1 with advantage 1, per token of one reply."""
    token_logprobs = torch.tensor([[-0.5, -1.0, -0.2, -0.3]], requires_grad=True)
    reply = torch.tensor([[True, True, True, True]])
    action = torch.tensor([[False, False, True, True]])
    scores = Scores(
        torch.zeros(1), token_logprobs, reply, action, action.any(-1), torch.zeros(1, 4)
    )
    logprob = scores.logprob(thought_coef)
    out = ppo_loss(
        logprob,
        logprob.detach(),
        torch.ones(1),
        torch.zeros(1),
        torch.zeros(1),
        torch.zeros(1),
        clip_coef=0.2,
        vf_coef=0.5,
    )
    out.loss.backward()
    grad = token_logprobs.grad[0]
    return grad[~action[0]], grad[action[0]]


@pytest.mark.parametrize(("thought_coef", "thought_grad"), [(0.0, 0.0), (0.5, -0.5), (1.0, -1.0)])
def test_lambda_scales_the_thought_tokens_gradient(thought_coef, thought_grad):
    thought, action = _thought_and_action_gradients(thought_coef)
    assert thought.tolist() == [thought_grad, thought_grad]
    assert action.tolist() == [-1.0, -1.0]  # the action tokens always get the full gradient


def test_lambda_zero_leaves_the_model_without_gradient_from_thought_tokens():
    """Through the real model: with lambda 0 a reply with no action key (thoughts only) gives
    no gradient to any weight; with lambda 1 it does."""
    policy = load_policy("tiny-llava", seed=0)
    image = torch.zeros(policy.image_size, policy.image_size, 3, dtype=torch.uint8).numpy()
    reply = policy.processor.tokenizer("I think the answer is", add_special_tokens=False)
    for thought_coef, expect_gradient in ((0.0, False), (1.0, True)):
        policy.zero_grad(set_to_none=True)
        scores = policy.score([image], ["a prompt"], [reply.input_ids])
        assert not scores.has_action.any()
        scores.logprob(thought_coef).sum().backward()
        grads = [p.grad for p in policy.model.parameters() if p.grad is not None]
        assert any(g.abs().sum() > 0 for g in grads) == expect_gradient


# ----------------------------------------------------------------------------- processes


def launch_worker(processes: int, out: Path, *args: str) -> Path:
    """``tests/ddp_worker.py`` in ``processes`` data-parallel processes on the CPU."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"),
        "--num_processes",
        str(processes),
        str(ROOT / "tests" / "ddp_worker.py"),
        str(out),
        *args,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    """One launch of two processes does the jobs of both two-process tests: starting the
    processes costs about as much as the jobs. (``make test`` keeps the tests of an
    ``xdist_group`` on one worker, so that they share it.)"""
    return launch_worker(2, tmp_path_factory.mktemp("two-processes"), "accumulate", "train", *FAST)


@pytest.mark.xdist_group("two processes")
def test_two_data_parallel_processes_end_with_identical_weights(two_processes):
    digests = [torch.load(two_processes / f"weights-{rank}.pt") for rank in (0, 1)]
    assert digests[0]["processes"] == digests[1]["processes"] == 2
    assert_same_weights(digests[0]["weights"], digests[1]["weights"])
    start = load_policy("tiny-llava", seed=0).state_dict()
    assert any(not torch.equal(start[k], v) for k, v in digests[0]["weights"].items())
    assert (two_processes / "ddp" / "checkpoints" / "update-000002").is_dir()


def assert_accumulation_matches_one_large_minibatch(out: Path, processes: int) -> None:
    for rank in range(processes):
        saved = torch.load(out / f"changes-{rank}.pt")
        assert saved["processes"] == processes
        large, accumulated = saved["changes"].values()
        assert max(change.abs().max() for change in large.values()) > 1e-3  # it trained
        for key, change in large.items():
            torch.testing.assert_close(accumulated[key], change, rtol=1e-4, atol=1e-6)


def test_accumulated_minibatches_make_the_same_update_as_one_large_one(tmp_path):
    """grad_accum=4 over minibatches of 8 steps the weights as one minibatch of 32 does, in
    this process..."""
    one_update_two_ways(Accelerator(cpu=True), tmp_path)
    assert_accumulation_matches_one_large_minibatch(tmp_path, 1)


@pytest.mark.xdist_group("two processes")
def test_accumulation_makes_the_same_update_on_two_processes(two_processes):
    """... and on two processes, where only the fourth minibatch's gradients are exchanged."""
    assert_accumulation_matches_one_large_minibatch(two_processes, 2)


@pytest.mark.parametrize("config_name", ["paper/numberline", "paper/alfworld"])
def test_deepspeed_takes_accumulation_and_clipping_from_the_trainer_config(config_name):
    """Left 'auto' (the shipped ZeRO-2 config), accelerate fills DeepSpeed's accumulation
    steps from its own default and the clipping norm with 1.0; set from the config, they
    survive that filling, so the engine accumulates and clips as the trainer means."""
    from accelerate.utils import DeepSpeedPlugin

    ppo = load_config(config_name).ppo
    plugin = DeepSpeedPlugin(zero_stage=2)
    plugin.deepspeed_config.update(
        deepspeed_settings(ppo.minibatch_size, ppo.grad_accum, ppo.max_grad_norm, processes=8)
    )
    # what Accelerator.prepare does with DeepSpeed's values before it starts the engine
    plugin.fill_match(
        "gradient_accumulation_steps", must_match=False, gradient_accumulation_steps=1
    )
    plugin.deepspeed_config_process(must_match=False, gradient_clipping=1.0)
    assert plugin.get_value("gradient_accumulation_steps") == ppo.grad_accum
    assert plugin.get_value("gradient_clipping") == ppo.max_grad_norm == 0.01
    assert plugin.get_value("train_micro_batch_size_per_gpu") == ppo.minibatch_size
    assert plugin.get_value("train_batch_size") == ppo.minibatch_size * ppo.grad_accum * 8
    assert plugin.get_value("bf16")["enabled"] is False  # float32 weights, the policy autocasts


def test_subprocess_environments_collect_the_same_rollout():
    policy = load_policy("tiny-llava", seed=0).eval()
    buffers = []
    for vector in ("sync", "async"):
        envs = make_envs("numberline", 2, image_size=policy.image_size, vector=vector)
        buffer = RolloutBuffer(3, 2)
        torch.manual_seed(0)
        collect(policy, envs, buffer, [5, 6], thought_coef=0.5, temperature=1.0, max_new_tokens=12)
        envs.close()
        buffers.append(buffer)
    sync, subprocesses = buffers
    assert sync.reply_ids == subprocesses.reply_ids
    assert (sync.rewards == subprocesses.rewards).all()
    assert (sync.logprobs == subprocesses.logprobs).all()


def test_the_sft_command_writes_a_checkpoint_the_trainer_starts_from(tmp_path, capsys):
    write_demonstrations(
        "numberline", 3, tmp_path / "data", epsilon=1.0, image_size=PRESETS["tiny-llava"].image_size
    )
    code = main(
        [
            "sft",
            "--game",
            "numberline",
            "--data",
            str(tmp_path / "data"),
            "--model",
            "tiny-llava",
            "--out",
            str(tmp_path / "sft"),
            "vision.steps=0",
            "sft.epochs=1",
            "sft.batch_size=4",
        ]
    )
    assert code == 0
    assert "checkpoint in" in capsys.readouterr().out
    report = json.loads((tmp_path / "sft" / "sft_report.json").read_text())
    assert report["steps"] >= 1 and math.isfinite(report["loss"])
    start, tuned = load_policy("tiny-llava", seed=0), load_policy(tmp_path / "sft")
    assert not torch.equal(
        start.model.get_input_embeddings().weight, tuned.model.get_input_embeddings().weight
    )


def test_the_kl_penalty_and_the_entropy_bonus_train(tmp_path):
    """kl_coef > 0 scores every minibatch against a frozen copy of the starting policy;
    ent_coef > 0 adds the entropy bonus. Both run through the trainer and log."""
    run_dir, _ = fast_run(tmp_path, "penalties", "ppo.kl_coef=0.1", "ppo.ent_coef=0.01")
    rows = read_metrics(run_dir / "metrics.jsonl")
    kl = [row["losses/kl_reference"] for row in rows]
    assert all(math.isfinite(value) and value >= 0 for value in kl)
    assert kl[-1] > 0  # the policy has moved away from its start
    assert all(row["losses/entropy"] > 0 for row in rows)


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="no bf16 units on this CPU")
def test_a_bf16_checkpoint_trains_float32_weights(tmp_path):
    """Full fine-tuning of a bf16 checkpoint: the trained weights become float32 (Adam's steps
    would round away in bf16), the frozen vision tower stays bf16, and PPO runs on it."""
    bf16 = load_policy("tiny-llava", dtype=torch.bfloat16)
    bf16.save(tmp_path / "bf16")
    config = load_config("tiny/numberline", [*FAST, f"model.name={tmp_path / 'bf16'}"])
    policy = train.load_for_training(config.model.name, config, Accelerator(cpu=True))
    by_trained = {p.requires_grad: set() for p in policy.parameters()}
    for parameter in policy.parameters():
        by_trained[parameter.requires_grad].add(parameter.dtype)
    assert by_trained == {True: {torch.float32}, False: {torch.bfloat16}}
    _, result = fast_run(tmp_path, "run", f"model.name={tmp_path / 'bf16'}")
    assert 0 <= result["success_rate"] <= 1


def test_bf16_weights_without_autocast_are_refused(tmp_path):
    load_policy("tiny-llava", dtype=torch.bfloat16).save(tmp_path / "bf16")
    config = load_config(
        "tiny/numberline", [*FAST, f"model.name={tmp_path / 'bf16'}", "model.bf16=false"]
    )
    with pytest.raises(ValueError, match=r"frozen weights are torch\.bfloat16, which needs bf16"):
        train.load_for_training(config.model.name, config, Accelerator(cpu=True))


def test_the_kl_reference_is_the_starting_policy_kept_as_its_adapters(tmp_path):
    """With LoRA the reference keeps only the adapters' starting values: swapped in, the
    policy is the one PPO started from; swapped back, the trained one."""
    lora = ["ppo.kl_coef=0.1", "model.lora=true", "model.lora_rank=4", "model.lora_alpha=8"]
    config = load_config("tiny/numberline", [*FAST, *lora])
    policy = train.load_for_training("tiny-llava", config, Accelerator(cpu=True))
    start = {k: v.clone() for k, v in policy.state_dict().items()}
    trainer = PPOTrainer(config, policy, tmp_path / "run", progress=False)
    kept = sum(p.numel() for p in trainer._starting_weights)
    assert kept < sum(p.numel() for p in policy.parameters()) / 10
    trainer.train()
    trained = {k: v.clone() for k, v in policy.state_dict().items()}
    assert any(not torch.equal(trained[k], start[k]) for k in start)
    with trainer._at_starting_weights():
        assert_same_weights(policy.state_dict(), start)
    assert_same_weights(policy.state_dict(), trained)


def test_a_checkpoint_is_evaluated_with_the_prompt_it_was_trained_on(tmp_path, monkeypatch):
    """A model trained without CoT, or with a history, keeps that in its checkpoint, and
    ``rlvlm eval`` asks it the same way unless told otherwise."""
    config = load_config("tiny/numberline", ["ppo.cot=false", "env.history=2"])
    policy = train.prepare(load_policy("tiny-llava"), config)
    policy.save(tmp_path / "ckpt")
    assert load_policy(tmp_path / "ckpt").prompt == {"cot": False, "history": 2}
    with pytest.raises(ValueError, match="trained with cot=False, history=2, the run asks with"):
        train.prepare(load_policy(tmp_path / "ckpt"), load_config("tiny/numberline"))

    asked = []

    class Asked(Exception):  # enough: the episodes need not play
        pass

    def played(*args, cot, history, **kwargs):
        asked.append((cot, history))
        raise Asked

    monkeypatch.setattr("rlvlm.evaluation.run_episodes", played)
    argv = ["eval", "--game", "numberline", "--policy", str(tmp_path / "ckpt")]
    for extra in ([], ["--cot", "--history", "0"]):
        with pytest.raises(Asked):
            main([*argv, *extra])
    with pytest.raises(Asked):  # an untrained model: the defaults
        main(["eval", "--game", "numberline", "--policy", "tiny-llava"])
    assert asked == [(False, 2), (True, 0), (True, 0)]


def test_training_a_checkpoint_on_other_prompts_stops_before_any_work(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(sft_data, "load_demonstrations", lambda path: [])  # read before it
    config = load_config("tiny/numberline", ["ppo.cot=false"])
    train.prepare(load_policy("tiny-llava"), config).save(tmp_path / "ckpt")
    argv = ["--model", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out")]
    assert main(["train", *argv]) == 2  # the config asks with CoT
    assert main(["sft", "--game", "numberline", "--data", str(tmp_path / "ckpt"), *argv]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all("trained with cot=False, history=0" in e for e in errors)
    assert not (tmp_path / "out").exists()


def test_sft_starts_from_the_configs_model_unless_told(tmp_path, monkeypatch):
    started = []

    def check(config):  # enough: the model need not train
        started.append(config.model.name)
        raise ValueError("stop")

    monkeypatch.setattr(train, "check_starting_model", check)
    monkeypatch.setattr(sft_data, "load_demonstrations", lambda path: [])  # read before it
    argv = ["sft", "--data", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main([*argv, "--game", "alfworld"]) == 2
    assert main([*argv, "--game", "alfworld", "--model", "tiny-qwen2-vl"]) == 2
    assert started == ["tiny-llava-alfworld", "tiny-qwen2-vl"]
