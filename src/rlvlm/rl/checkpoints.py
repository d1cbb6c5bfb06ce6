"""Training checkpoints: the policy in Hugging Face format plus the trainer's state.

``checkpoints/update-000010/`` is an ordinary policy checkpoint (``rlvlm eval --policy``
opens it) with ``trainer_state.pt`` beside: optimizer, scheduler, update count and every
process's RNG state. It is assembled in a hidden staging directory and renamed into place,
so a crash mid-save leaves the previous checkpoints as they were.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from rlvlm.models.policy import VLMPolicy, load_policy

STATE_FILE = "trainer_state.pt"
_NAME = re.compile(r"update-(\d+)")


class Checkpoints:
    def __init__(self, root: Path, keep: int, accelerator: Accelerator):
        self.root, self.keep, self.accelerator = Path(root), max(keep, 1), accelerator

    def saved(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            match = _NAME.fullmatch(path.name)
            if match and (path / STATE_FILE).is_file():
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self) -> Path | None:
        saved = self.saved()
        return saved[-1][1] if saved else None

    def save(self, update: int, policy: VLMPolicy, state: dict[str, Any]) -> Path:
        path = self.root / f"update-{update:06d}"
        if self.accelerator.is_main_process:
            staging = self.root / f".{path.name}.saving"
            shutil.rmtree(staging, ignore_errors=True)
            policy.save(staging)
            torch.save(state, staging / STATE_FILE)
            shutil.rmtree(path, ignore_errors=True)  # a save of this update cut off earlier
            staging.rename(path)
            for _, old in self.saved()[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return path

    def load_latest(self, policy: VLMPolicy) -> dict[str, Any] | None:
        """Put the latest checkpoint's weights into ``policy``; its trainer state, or None."""
        path = self.latest()
        if path is None:
            return None
        saved = load_policy(path, device=policy.device)
        missing, unexpected = policy.load_state_dict(saved.state_dict(), strict=False)
        if unexpected or [key for key in missing if "lora_" in key or "value_head" in key]:
            raise ValueError(
                f"{path} does not fit this run's model (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]})"
            )
        return torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
