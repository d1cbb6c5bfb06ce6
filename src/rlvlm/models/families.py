"""What differs between VLM families, in one table.

Everything else (chat templates, generation, the forward pass) goes through transformers'
own classes, so a family entry only says where its vision parts live, how its processor is
loaded, and how to build a tiny random member of it offline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from transformers import AutoProcessor, PretrainedConfig, ProcessorMixin


@dataclass(frozen=True)
class Family:
    name: str
    #: ``config.model_type`` values of the checkpoints this entry handles.
    model_types: tuple[str, ...]
    #: Module-name parts of the vision encoder and of the projector that feeds the LM.
    vision_modules: tuple[str, ...]
    projector_modules: tuple[str, ...]
    #: Loads the processor saved in a checkpoint directory.
    load_processor: Callable[[str | Path], ProcessorMixin] = AutoProcessor.from_pretrained

    def part_of(self, module_name: str) -> str:
        """``"vision"``, ``"projector"`` or ``"language"`` for a module's qualified name."""
        parts = module_name.split(".")
        if any(p in parts for p in self.projector_modules):
            return "projector"
        if any(p in parts for p in self.vision_modules):
            return "vision"
        return "language"

    def vision_tower(self, model: nn.Module) -> nn.Module:
        """The vision encoder module (the first module whose name ends with a vision part)."""
        for name, module in model.named_modules():
            if name.split(".")[-1] in self.vision_modules:
                return module
        raise ValueError(f"no vision module {self.vision_modules} in this {self.name} model")


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            "llava",
            ("llava", "llava_next"),
            vision_modules=("vision_tower",),
            projector_modules=("multi_modal_projector",),
        ),
    )
}


def family_of(config: PretrainedConfig | dict[str, Any]) -> Family:
    """The family of a model config, or a ValueError naming the supported ones."""
    model_type = config.get("model_type") if isinstance(config, dict) else config.model_type
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    supported = ", ".join(t for f in FAMILIES.values() for t in f.model_types)
    raise ValueError(f"unsupported model type {model_type!r}; supported: {supported}")
