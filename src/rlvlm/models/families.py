"""What differs between VLM families, in one table.

Everything else (chat templates, generation, the forward pass) goes through transformers'
own classes, so a family entry only says where its vision parts live, how its processor is
loaded, and which processor outputs run alongside the tokens.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from transformers import (
    AutoProcessor,
    PretrainedConfig,
    ProcessorMixin,
    Qwen2_5_VLProcessor,
    Qwen2VLProcessor,
    Qwen3VLProcessor,
    SmolVLMProcessor,
)


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
    #: Processor outputs laid out token for token like ``input_ids`` (besides the attention
    #: mask). A forward pass over the prompt plus a reply needs them extended over the reply
    #: with zeros (reply tokens are text), as ``generate`` itself extends them.
    token_inputs: tuple[str, ...] = ()

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


class _ImageOnly:
    """A processor without its video processor (mixed in before a transformers processor).

    Without torchvision, transformers cannot build a video processor, so the Qwen and
    SmolVLM processors fail in their constructor and in ``from_pretrained``. These take only
    the image processor and the tokenizer; a checkpoint's video processor config is ignored.
    They save under the original class name, so a checkpoint written here stays a standard
    one for transformers with torchvision (here, ``AutoProcessor`` cannot load it for the
    same reason: use the subclass's ``from_pretrained``).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__name__ = cls.__bases__[-1].__name__  # what save_pretrained writes

    @classmethod
    def get_attributes(cls) -> list[str]:
        return ["image_processor", "tokenizer"]

    @classmethod
    def from_args_and_dict(cls, args, processor_dict: dict[str, Any], **kwargs):
        processor_dict = {k: v for k, v in processor_dict.items() if k != "video_processor"}
        return super().from_args_and_dict(args, processor_dict, **kwargs)


class Qwen2VLProcessorImageOnly(_ImageOnly, Qwen2VLProcessor):
    pass


class Qwen2_5_VLProcessorImageOnly(_ImageOnly, Qwen2_5_VLProcessor):
    pass


class Qwen3VLProcessorImageOnly(_ImageOnly, Qwen3VLProcessor):
    pass


class SmolVLMProcessorImageOnly(_ImageOnly, SmolVLMProcessor):
    # SmolVLMProcessor requires a video processor argument; from_pretrained reads the
    # arguments off this signature.
    def __init__(
        self,
        image_processor,
        tokenizer,
        video_processor=None,
        image_seq_len: int = 169,
        chat_template: str | None = None,
        **kwargs,
    ):
        super().__init__(
            image_processor, tokenizer, video_processor, image_seq_len, chat_template, **kwargs
        )


_CONFIG_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


def _processor_class_name(path: str | Path) -> str | None:
    """The ``processor_class`` a checkpoint directory's configs name, if any."""
    for file in _CONFIG_FILES:
        if (Path(path) / file).is_file():
            name = json.loads((Path(path) / file).read_text()).get("processor_class")
            if name:
                return name
    return None


def _load_idefics3_processor(path: str | Path) -> ProcessorMixin:
    """An Idefics3 processor, or a SmolVLM one (image only; it needs ``num2words``)."""
    if _processor_class_name(path) == SmolVLMProcessor.__name__:
        return SmolVLMProcessorImageOnly.from_pretrained(path)
    return AutoProcessor.from_pretrained(path)


def _qwen(name: str, model_type: str, processor_class: type[ProcessorMixin]) -> Family:
    return Family(
        name,
        (model_type,),
        vision_modules=("visual",),
        projector_modules=("merger", "deepstack_merger_list"),
        load_processor=processor_class.from_pretrained,
        token_inputs=("mm_token_type_ids",),
    )


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            "llava",
            ("llava", "llava_next"),
            vision_modules=("vision_tower",),
            # LLaVA-NeXT's separator between image rows is a parameter of the projector's.
            projector_modules=("multi_modal_projector", "image_newline"),
        ),
        _qwen("qwen2_vl", "qwen2_vl", Qwen2VLProcessorImageOnly),
        _qwen("qwen2_5_vl", "qwen2_5_vl", Qwen2_5_VLProcessorImageOnly),
        _qwen("qwen3_vl", "qwen3_vl", Qwen3VLProcessorImageOnly),
        Family(
            "idefics3",
            ("idefics3", "smolvlm"),
            vision_modules=("vision_model",),
            projector_modules=("connector",),
            load_processor=_load_idefics3_processor,
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
