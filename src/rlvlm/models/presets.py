"""Tiny VLM presets: random-weight members of each family, built offline in seconds.

They exist so that everything (tests, the demo, CPU training) runs without downloading a
model. Images are 84x84 with 14-pixel patches: 6x6 patches, enough for NumberLine's digits
and for the rank and suit of four cards in a row to stay legible (each card is about 17
pixels wide), while keeping the image down to a few dozen tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
)

from rlvlm.models.tokenizer import train_tokenizer

IMAGE_SIZE = 84
PATCH_SIZE = 14


@dataclass(frozen=True)
class Preset:
    name: str
    family: str
    build: Callable[[], tuple[PreTrainedModel, ProcessorMixin]]
    summary: str
    image_size: int = IMAGE_SIZE


def _text_config(tokenizer: PreTrainedTokenizerFast, **overrides) -> LlamaConfig:
    settings = dict(
        vocab_size=len(tokenizer), hidden_size=256, intermediate_size=768, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None, tie_word_embeddings=True,
    )  # fmt: skip
    return LlamaConfig(**settings | overrides)


# The chat templates copy each family's real turn markers, so the tiny presets exercise the
# same prompt path as real checkpoints.
LLAVA_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}USER: "
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}<image>\n{%- else -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}\n"
    "{%- else -%}ASSISTANT:\n"
    "{%- for item in message['content'] -%}{{ item['text'] }}{%- endfor -%}</s>\n"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}ASSISTANT:\n{%- endif -%}"
)


@cache
def _llava_tokenizer() -> PreTrainedTokenizerFast:
    return train_tokenizer(["USER:", "ASSISTANT:"], "<image>", eos_token="</s>", pad_token="<pad>")


def build_tiny_llava() -> tuple[PreTrainedModel, ProcessorMixin]:
    from transformers import CLIPImageProcessorPil

    tokenizer = _llava_tokenizer()
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )  # fmt: skip
    vision = CLIPVisionConfig(
        image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, hidden_size=192, intermediate_size=768,
        num_hidden_layers=3, num_attention_heads=4,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=vision, text_config=_text_config(tokenizer),
        image_token_id=tokenizer.image_token_id, vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )  # fmt: skip
    return LlavaForConditionalGeneration(config), processor


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("tiny-llava", "llava", build_tiny_llava, "LLaVA: CLIP encoder + Llama, 84 px"),
    )
}
DEFAULT_PRESET = "tiny-llava"


def build_preset(name: str, seed: int = 0) -> tuple[PreTrainedModel, ProcessorMixin]:
    """A fresh preset model in float32 and its processor; the same seed gives the same weights."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, processor = PRESETS[name].build()
    model.config.name_or_path = name
    return model.float().eval(), processor
