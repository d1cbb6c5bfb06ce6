"""One process of the multi-process tests, run by ``accelerate launch ... ddp_worker.py OUT
JOB... [key=value...]``, doing each job in turn:

accumulate   one PPO update on one rollout, as minibatches of 32 and as 4 accumulated
             minibatches of 8; saves both weight changes
train        SFT and PPO data-parallel in OUT/ddp, with the overrides given; saves this
             process's weights
"""

import copy
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from rlvlm import train
from rlvlm.config import load_config
from rlvlm.models import PRESETS, load_policy
from rlvlm.rl.buffer import RolloutBuffer
from rlvlm.rl.rollout import collect, make_envs
from rlvlm.rl.trainer import PPOTrainer
from rlvlm.seeds import train_seeds
from rlvlm.sft.data import load_demonstrations, write_demonstrations

#: Float32 throughout; an Adam epsilon of 1 makes the first step lr * g / (|g| + 1), close to
#: linear in the gradient, so equal gradients give equal steps to float tolerance.
ACCUMULATION = [
    "vision.steps=0",
    "sft.episodes=0",
    "model.bf16=false",
    "ppo.num_envs=4",
    "ppo.steps_per_env=8",
    "ppo.epochs=1",
    "ppo.max_new_tokens=12",
    "ppo.temperature=1.0",
    "ppo.lr=1.0",
    "ppo.value_lr=1.0",
    "ppo.adam_eps=1.0",
    "ppo.max_grad_norm=1e9",
]


def train_both_stages(accelerator: Accelerator, out: Path, overrides: list[str]) -> None:
    config = load_config("tiny/numberline", overrides)
    run_dir = out / "ddp"
    if accelerator.is_main_process:
        write_demonstrations(
            "numberline",
            4,
            run_dir / "data",
            epsilon=1.0,
            image_size=PRESETS[config.model.name].image_size,
        )
    accelerator.wait_for_everyone()
    demonstrations = load_demonstrations(run_dir / "data")
    train.run_sft(
        config, config.model.name, demonstrations, run_dir / "sft", accelerator, progress=False
    )
    policy = load_policy(run_dir / "sft", device=accelerator.device, seed=config.seed)
    trainer = PPOTrainer(
        config, train.prepare(policy, config), run_dir, accelerator, progress=False
    )
    trainer.train()
    weights = {k: v.detach().cpu().clone() for k, v in trainer.policy.state_dict().items()}
    torch.save(
        {"processes": accelerator.num_processes, "weights": weights},
        out / f"weights-{accelerator.process_index}.pt",
    )


def one_update_two_ways(accelerator: Accelerator, out: Path) -> None:
    ways = {
        "one minibatch of 32": ["ppo.minibatch_size=32", "ppo.grad_accum=1"],
        "4 x 8 accumulated": ["ppo.minibatch_size=8", "ppo.grad_accum=4"],
    }
    config = load_config("tiny/numberline", ACCUMULATION + ways["one minibatch of 32"])
    policy = train.prepare(load_policy("tiny-llava", seed=0), config).eval()
    start = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    envs = make_envs("numberline", 4, image_size=policy.image_size)
    buffer = RolloutBuffer(8, 4)
    seeds = train_seeds(0, 0, accelerator.process_index, 4)
    stats = collect(
        policy, envs, buffer, seeds, thought_coef=0.5, temperature=1.0, max_new_tokens=12
    )
    envs.close()
    changes = {}
    for way, overrides in ways.items():
        config = load_config("tiny/numberline", ACCUMULATION + overrides)
        policy.load_state_dict(start)
        trainer = PPOTrainer(config, policy, out / "runs", accelerator, progress=False)
        trainer._optimize(copy.deepcopy(buffer), stats)
        changes[way] = {k: v.detach() - start[k] for k, v in policy.state_dict().items()}
    torch.save(
        {"processes": accelerator.num_processes, "changes": changes},
        out / f"changes-{accelerator.process_index}.pt",
    )


if __name__ == "__main__":
    out, args = Path(sys.argv[1]), sys.argv[2:]
    accelerator = Accelerator(cpu=True)
    overrides = [arg for arg in args if "=" in arg]
    jobs = {
        "accumulate": lambda: one_update_two_ways(accelerator, out),
        "train": lambda: train_both_stages(accelerator, out, overrides),
    }
    for job in (arg for arg in args if "=" not in arg):
        jobs[job]()  # a KeyError names a job that does not exist
