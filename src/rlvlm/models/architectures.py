"""Real checkpoints' architectures with random weights: real size, nothing downloaded.

Each architecture ships its checkpoint's own ``config.json`` and ``preprocessor_config.json``
(``configs/architectures/<name>/``), so the model has the checkpoint's exact layers and the
images become as many tokens as there. The tokenizer is the family's tiny-preset one
(its real special tokens; a byte-level BPE trained on the games' text, which cannot stand in
for a real vocabulary's weights but spells a prompt in a similar number of tokens): a real
tokenizer is a download. Sampling keeps to the tokenizer's ids, as it does for a real
checkpoint whose embedding matrix has padding rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    Qwen2VLImageProcessorPil,
)

from rlvlm.config import architecture_folder
from rlvlm.models.families import Qwen2_5_VLProcessorImageOnly, family_of
from rlvlm.models.policy import VLMPolicy, fit_attention
from rlvlm.models.presets import LLAVA_TEMPLATE, QWEN_TEMPLATE, llava_tokenizer, qwen_tokenizer


@dataclass(frozen=True)
class Architecture:
    name: str
    checkpoint: str  # where its config files come from, on the Hugging Face hub

    def files(self) -> tuple[dict, dict]:
        """The checkpoint's model config and image-processor config."""
        folder = architecture_folder(self.name)
        return tuple(
            json.loads((folder / file).read_text())
            for file in ("config.json", "preprocessor_config.json")
        )


ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("llava-v1.6-mistral-7b", "llava-hf/llava-v1.6-mistral-7b-hf"),
        Architecture("qwen2.5-vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct"),
        Architecture("qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct"),
    )
}


def build_architecture(
    name: str,
    *,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    seed: int = 0,
    layers: int | None = None,
) -> VLMPolicy:
    """A policy with ``name``'s architecture and random weights in ``dtype``, built on
    ``device`` (on a GPU, without passing through the CPU's memory). ``layers`` keeps that
    many blocks of the language model and of the vision encoder, at full width (for tests)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(ARCHITECTURES)}")
    settings, image_settings = ARCHITECTURES[name].files()
    family = family_of(settings)
    if family.name == "llava":
        tokenizer = llava_tokenizer()
        image_processor = LlavaNextImageProcessorPil.from_dict(image_settings)
        processor = LlavaNextProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            chat_template=LLAVA_TEMPLATE,
            patch_size=settings["vision_config"]["patch_size"],
            vision_feature_select_strategy=settings["vision_feature_select_strategy"],
            num_additional_image_tokens=1,  # CLIP's class token, as the checkpoint's processor
        )
        ids = {"image_token_id": tokenizer.image_token_id}
    else:
        tokenizer = qwen_tokenizer()
        image_processor = Qwen2VLImageProcessorPil.from_dict(image_settings)
        processor = Qwen2_5_VLProcessorImageOnly(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_TEMPLATE
        )
        token = tokenizer.convert_tokens_to_ids
        ids = {
            "image_token_id": tokenizer.image_token_id,
            "video_token_id": token("<|video_pad|>"),
            "vision_start_token_id": token("<|vision_start|>"),
            "vision_end_token_id": token("<|vision_end|>"),
        }
    if layers is not None:
        vision = settings["vision_config"]
        vision["depth" if "depth" in vision else "num_hidden_layers"] = layers
        settings.get("text_config", settings)["num_hidden_layers"] = layers
    model_type = settings.pop("model_type")
    config = AutoConfig.for_model(model_type, **settings | ids)
    text = config.get_text_config()
    text.pad_token_id, text.eos_token_id, text.bos_token_id = (
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
        None,
    )
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.config.name_or_path = name
    return fit_attention(VLMPolicy(model.eval(), processor, family))
