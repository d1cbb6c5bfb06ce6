"""Training checkpoints: the policy in Hugging Face format plus accelerate's training state.

``checkpoints/update-000010/`` is an ordinary policy checkpoint (``rlvlm eval --policy``,
transformers and peft open it) with ``trainer_state/`` inside: what ``accelerator.save_state``
writes (the trained weights, optimizer, scheduler and every process's RNG state; under
DeepSpeed its engine's own files). Only the trained weights go there (with LoRA, the adapters
and the value head), so a frozen model is not stored twice. The checkpoint is assembled in a
hidden staging directory and renamed into place, so a crash mid-save leaves the previous
checkpoints as they were.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import SAFE_WEIGHTS_NAME
from safetensors.torch import load_file

from rlvlm.io import replace_dir, staging_path
from rlvlm.models.policy import VLMPolicy

STATE_DIR = "trainer_state"
_NAME = re.compile(r"update-(\d+)")


class Checkpoints:
    def __init__(self, root: Path, keep: int, accelerator: Accelerator | None):
        self.root, self.keep, self.accelerator = Path(root), max(keep, 1), accelerator
        if accelerator is not None:
            accelerator.register_save_state_pre_hook(_keep_trained_weights)
            accelerator.register_load_state_pre_hook(_load_trained_weights)

    def saved(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            match = _NAME.fullmatch(path.name)
            if match and (path / STATE_DIR).is_dir():
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self) -> Path | None:
        saved = self.saved()
        return saved[-1][1] if saved else None

    def save(self, update: int, policy: VLMPolicy) -> Path:
        """Every process calls this (each saves its RNG state; DeepSpeed its shards)."""
        accelerator = self.accelerator
        path = self.root / f"update-{update:06d}"
        staging = staging_path(path)  # every process writes its part of the state into it
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
            policy.save(staging)
        accelerator.wait_for_everyone()
        accelerator.save_state(staging / STATE_DIR)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            replace_dir(staging, path)
            for _, old in self.saved()[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        return path

    def load_latest(self) -> int | None:
        """Put the latest checkpoint's training state into the prepared model, optimizer,
        scheduler and RNGs; its update, or None if there is none."""
        saved = self.saved()
        if not saved:
            return None
        update, path = saved[-1]
        self.accelerator.load_state(path / STATE_DIR)
        return update


def _trained_names(model: torch.nn.Module) -> set[str]:
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


def _keep_trained_weights(models: list[torch.nn.Module], weights: list[dict], _dir: str) -> None:
    """save_state's pre-hook: drop the frozen weights from what it writes."""
    if len(weights) != len(models):  # DeepSpeed: its engine writes its own files
        return
    for model, state in zip(models, weights, strict=True):
        trained = _trained_names(model)
        for key in [key for key in state if key not in trained]:
            del state[key]


def _load_trained_weights(models: list[torch.nn.Module], input_dir: str) -> None:
    """load_state's pre-hook: the trained weights into the model in place, after checking that
    they are exactly the ones this run trains; accelerate then loads the rest."""
    for index, model in enumerate(models):
        name = SAFE_WEIGHTS_NAME if index == 0 else SAFE_WEIGHTS_NAME.replace(".", f"_{index}.")
        state = load_file(Path(input_dir) / name, device=str(next(model.parameters()).device))
        trained = _trained_names(model)
        if set(state) != trained:
            raise ValueError(
                f"{Path(input_dir).parent} does not fit this run's model (it trains "
                f"{len(trained)} tensors, the checkpoint has {len(state)}: "
                f"{sorted(set(state) ^ trained)[:3]} ...)"
            )
        model.load_state_dict(state, strict=False)
    models.clear()
