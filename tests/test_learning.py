"""Learning: SFT on random-action demonstrations teaches the tiny model to read NumberLine and
to write a reply, and a short PPO phase on the rewards then beats that SFT checkpoint on the
same held-out episodes by a clear margin. The whole job of ``rlvlm train``, at a small size."""

from __future__ import annotations

import pytest
import torch

from rlvlm import train
from rlvlm.config import load_config
from rlvlm.models import PRESETS, load_policy
from rlvlm.rl.trainer import PPOTrainer, evaluate_held_out
from rlvlm.sft.data import load_demonstrations, write_demonstrations
from rlvlm.sft.trainer import train_sft

#: The default tiny config with more demonstrations (300 episodes, one epoch over them), a
#: third of its vision pretraining, 2 PPO updates of one epoch each, evaluated on 60
#: held-out episodes at its evaluation temperature.
SETTINGS = [
    "sft.episodes=300",
    "sft.epochs=1",
    "ppo.updates=2",
    "ppo.epochs=1",
    "eval.episodes=60",
    "eval.every=0",
    "checkpoint_every=100",
]
#: Measured (seed 0, one thread, bf16 autocast): SFT 40.0 %, PPO 73.3 % on these 60 episodes
#: (78.3 % after 3 updates, 81.7 % after 3 updates of 2 epochs, which took half as long
#: again). The test asks for a clear gain. (With 200 episodes, SFT ended at 73.3 % on one
#: thread and 45.0 % on two, and PPO's gain was not always clear.)
MARGIN = 0.25


@pytest.fixture
def one_thread():
    """One thread, as each worker of the suite has: thread counts round differently, and
    the test's numbers should not depend on whether it runs alone."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_ppo_beats_the_sft_checkpoint_on_held_out_numberline(
    tmp_path, one_thread, numberline_reader
):
    config = load_config("tiny/numberline", [*SETTINGS, f"out={tmp_path}"])
    vision, report = numberline_reader
    assert min(report["accuracy"]["numberline"]["per_label"].values()) >= 0.9

    write_demonstrations(
        "numberline",
        config.sft.episodes,
        tmp_path / "data",
        epsilon=1.0,
        image_size=PRESETS[config.model.name].image_size,
    )
    train.seed_stage(config.seed, "sft")  # each stage seeded as rlvlm train seeds it
    policy = train.prepare(load_policy(vision), config)
    sft = config.sft
    train_sft(
        policy,
        load_demonstrations(tmp_path / "data"),
        epochs=sft.epochs,
        lr=sft.lr,
        batch_size=sft.batch_size,
        progress=False,
    )
    train.seed_stage(config.seed, "sft eval")
    before = evaluate_held_out(policy.eval(), config)

    train.seed_stage(config.seed, "ppo")
    trainer = PPOTrainer(config, train.prepare(policy, config), tmp_path / "ppo", progress=False)
    trainer.train()
    after = trainer.final_evaluation  # the same held-out episodes, after the last update
    print(f"SFT {before['success_rate']:.1%}, PPO {after['success_rate']:.1%}")
    assert after["success_rate"] >= before["success_rate"] + MARGIN, (before, after)
