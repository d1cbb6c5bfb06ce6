"""One process of the two-process test: ``accelerate launch ... ddp_worker.py OUT key=value...``
runs SFT and PPO data-parallel in OUT/ddp and saves this process's weights for the test."""

import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from rlvlm import train
from rlvlm.config import load_config
from rlvlm.models import PRESETS, load_policy
from rlvlm.rl.trainer import PPOTrainer
from rlvlm.sft.data import write_demonstrations


def main(out: Path, overrides: list[str]) -> None:
    accelerator = Accelerator(cpu=True)
    config = load_config("tiny/numberline", overrides)
    run_dir = out / "ddp"
    if accelerator.is_main_process:
        write_demonstrations("numberline", 4, run_dir / "data", epsilon=1.0,
                             image_size=PRESETS[config.model.name].image_size)  # fmt: skip
    accelerator.wait_for_everyone()
    train.run_sft(config, config.model.name, run_dir / "data", run_dir / "sft", accelerator,
                  progress=False)  # fmt: skip
    policy = load_policy(run_dir / "sft", device=accelerator.device, seed=config.seed)
    trainer = PPOTrainer(config, train.prepare(policy, config), run_dir, accelerator,
                         progress=False)  # fmt: skip
    trainer.train()
    weights = {k: v.detach().cpu().clone() for k, v in trainer.policy.state_dict().items()}
    torch.save({"processes": accelerator.num_processes, "weights": weights},
               out / f"weights-{accelerator.process_index}.pt")  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
