"""Tiny VLM presets: random-weight members of each family, built offline in seconds.

They exist so that everything (tests, the demo, CPU training) runs without downloading a
model. Images are 84x84 with 14-pixel patches: 6x6 patches, enough for NumberLine's digits
and for the rank and suit of four cards in a row to stay legible (each card is about 17
pixels wide), while keeping the image down to a few dozen tokens (LLaVA: 36; Qwen and
Idefics3 merge 2x2 patches into one token: 9).

Every preset has a language model of the same size (hidden 256, 4 layers, tied embeddings
over a byte-level BPE of about 700 tokens with the family's real special tokens) and a
3-layer vision encoder of width 192: 5 to 7 M parameters in all, the Qwen ones being larger
for their 2x2 patch mergers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial

import torch
from transformers import (
    CLIPVisionConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    Idefics3VisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import (
    Qwen2_5_VLTextConfig,
    Qwen2_5_VLVisionConfig,
)
from transformers.models.qwen2_vl.configuration_qwen2_vl import (
    Qwen2VLTextConfig,
    Qwen2VLVisionConfig,
)
from transformers.models.qwen3_vl.configuration_qwen3_vl import (
    Qwen3VLTextConfig,
    Qwen3VLVisionConfig,
)

from rlvlm.models.families import (
    Qwen2_5_VLProcessorImageOnly,
    Qwen2VLProcessorImageOnly,
    Qwen3VLProcessorImageOnly,
)
from rlvlm.models.tokenizer import train_tokenizer

IMAGE_SIZE = 84
PATCH_SIZE = 14
MERGE_SIZE = 2  # Qwen's spatial merge and Idefics3's pixel-shuffle scale factor
#: The sizes every preset shares: its language model's and its vision encoder's.
TEXT_WIDTH, TEXT_LAYERS, TEXT_HEADS = 256, 4, 4
VISION_WIDTH, VISION_LAYERS, VISION_HEADS = 192, 3, 4
HEAD_DIM = TEXT_WIDTH // TEXT_HEADS
#: The ALFWorld preset's tokenizer and context: ALFWorld prompts list every admissible
#: command and a room's receptacles, so they run far longer than the card games'.
ALFWORLD_VOCAB, ALFWORLD_CONTEXT = 2048, 2048


@dataclass(frozen=True)
class Preset:
    name: str
    family: str
    build: Callable[[], tuple[PreTrainedModel, ProcessorMixin]]
    summary: str
    image_size: int = IMAGE_SIZE


def _text_config(
    tokenizer: PreTrainedTokenizerFast,
    config_class: type[PretrainedConfig] = LlamaConfig,
    **overrides,
) -> PretrainedConfig:
    """The language model every preset shares, in its family's text-config class."""
    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_WIDTH,
        intermediate_size=3 * TEXT_WIDTH,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=TEXT_HEADS,
        num_key_value_heads=TEXT_HEADS,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    return config_class(**settings | overrides)


def _mrope(theta: float, real_sections: list[int], **extra) -> dict:
    """Qwen's multimodal RoPE settings. The real models split their 64 rotary frequencies
    (head_dim 128) into temporal, height and width sections; scaled to this head_dim, the
    sections must sum to head_dim / 2."""
    sections = [size * HEAD_DIM // 128 for size in real_sections]
    if sum(sections) != HEAD_DIM // 2:
        raise ValueError(f"mrope sections {sections} must sum to {HEAD_DIM // 2}")
    return {"rope_type": "default", "rope_theta": theta, "mrope_section": sections, **extra}


# The chat templates copy each family's real turn markers, so the tiny presets exercise the
# same prompt path as real checkpoints. A conversation's assistant turn is the generation
# prompt, the reply and the end-of-sequence token, so a prompt is a prefix of its dialogue.
# Literal text sits in expressions, out of reach of the tags' whitespace trimming.
LLAVA_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{ 'USER: ' }}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<image>\\n' }}"
    "{%- else -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{{ '\\n' }}"
    "{%- else -%}{{ 'ASSISTANT:\\n' }}"
    "{%- for item in message['content'] -%}{{ item['text'] }}{%- endfor -%}{{ '</s>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:\\n' }}{%- endif -%}"
)
QWEN_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- else -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)
IDEFICS3_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ message['role'] | capitalize }}{{ ':' }}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<image>' }}{%- else -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{{ '<end_of_utterance>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Assistant:' }}{%- endif -%}"
)


@cache
def llava_tokenizer(
    corpora: tuple[str, ...] = ("cards",), vocab_size: int = 1024
) -> PreTrainedTokenizerFast:
    return train_tokenizer(
        ["USER:", "ASSISTANT:"],
        "<image>",
        eos_token="</s>",
        pad_token="<pad>",
        vocab_size=vocab_size,
        corpora=corpora,
    )


@cache
def qwen_tokenizer() -> PreTrainedTokenizerFast:
    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>"]
    return train_tokenizer(
        specials, "<|image_pad|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )


@cache
def idefics3_tokenizer() -> PreTrainedTokenizerFast:
    # Idefics3Processor looks these up by name; <global-img> opens an unsplit image.
    specials = ["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]
    return train_tokenizer(specials, "<image>", eos_token="<end_of_utterance>", pad_token="<pad>")


def build_tiny_llava(
    corpora: tuple[str, ...] = ("cards",), vocab_size: int = 1024, context: int = 1024
) -> tuple[PreTrainedModel, ProcessorMixin]:
    from transformers import CLIPImageProcessorPil

    tokenizer = llava_tokenizer(corpora, vocab_size)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    vision = CLIPVisionConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_size=VISION_WIDTH,
        intermediate_size=4 * VISION_WIDTH,
        num_hidden_layers=VISION_LAYERS,
        num_attention_heads=VISION_HEADS,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=_text_config(tokenizer, max_position_embeddings=context),
        image_token_id=tokenizer.image_token_id,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    return LlavaForConditionalGeneration(config), processor


def _qwen_processor(processor_class: type[ProcessorMixin], **image_settings) -> ProcessorMixin:
    from transformers import Qwen2VLImageProcessorPil

    # Equal minimum and maximum pixel counts: every 84x84 image becomes a 6x6 patch grid,
    # 3x3 = 9 tokens after the 2x2 merge.
    pixels = (IMAGE_SIZE // (PATCH_SIZE * MERGE_SIZE) * PATCH_SIZE * MERGE_SIZE) ** 2
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": pixels, "longest_edge": pixels},
        patch_size=PATCH_SIZE,
        merge_size=MERGE_SIZE,
        temporal_patch_size=2,
        **image_settings,
    )
    return processor_class(
        image_processor=image_processor, tokenizer=qwen_tokenizer(), chat_template=QWEN_TEMPLATE
    )


def _qwen_config(
    config_class: type[PretrainedConfig], text: PretrainedConfig, vision: PretrainedConfig
) -> PretrainedConfig:
    tokenizer = qwen_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    return config_class(
        text_config=text,
        vision_config=vision,
        image_token_id=tokenizer.image_token_id,
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )


def build_tiny_qwen2_vl() -> tuple[PreTrainedModel, ProcessorMixin]:
    vision = Qwen2VLVisionConfig(
        depth=VISION_LAYERS,
        embed_dim=VISION_WIDTH,
        num_heads=VISION_HEADS,
        mlp_ratio=4,
        hidden_size=TEXT_WIDTH,
        patch_size=PATCH_SIZE,
        spatial_merge_size=MERGE_SIZE,
    )
    rope = _mrope(1e6, [16, 24, 24])
    text = _text_config(qwen_tokenizer(), Qwen2VLTextConfig, rope_parameters=rope)
    model = Qwen2VLForConditionalGeneration(_qwen_config(Qwen2VLConfig, text, vision))
    return model, _qwen_processor(Qwen2VLProcessorImageOnly)


def build_tiny_qwen2_5_vl() -> tuple[PreTrainedModel, ProcessorMixin]:
    # A gated (SwiGLU) MLP 8/3 wide has the parameters of the others' 4-wide one. The last
    # block attends over the whole image, the others within 112-pixel windows, as in the
    # real model (here a window holds the whole image).
    vision = Qwen2_5_VLVisionConfig(
        depth=VISION_LAYERS,
        hidden_size=VISION_WIDTH,
        intermediate_size=8 * VISION_WIDTH // 3,
        num_heads=VISION_HEADS,
        out_hidden_size=TEXT_WIDTH,
        patch_size=PATCH_SIZE,
        spatial_merge_size=MERGE_SIZE,
        window_size=112,
        fullatt_block_indexes=[VISION_LAYERS - 1],
    )
    rope = _mrope(1e6, [16, 24, 24])
    text = _text_config(qwen_tokenizer(), Qwen2_5_VLTextConfig, rope_parameters=rope)
    model = Qwen2_5_VLForConditionalGeneration(_qwen_config(Qwen2_5_VLConfig, text, vision))
    return model, _qwen_processor(Qwen2_5_VLProcessorImageOnly)


def build_tiny_qwen3_vl() -> tuple[PreTrainedModel, ProcessorMixin]:
    # One DeepStack layer, whose merged features are added to the image tokens' hidden states
    # after the LM's first layer (the real models have three), and learned position
    # embeddings for the 6x6 patch grid.
    vision = Qwen3VLVisionConfig(
        depth=VISION_LAYERS,
        hidden_size=VISION_WIDTH,
        intermediate_size=4 * VISION_WIDTH,
        num_heads=VISION_HEADS,
        out_hidden_size=TEXT_WIDTH,
        patch_size=PATCH_SIZE,
        spatial_merge_size=MERGE_SIZE,
        num_position_embeddings=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        deepstack_visual_indexes=[1],
    )
    rope = _mrope(5e6, [24, 20, 20], mrope_interleaved=True)
    text = _text_config(
        qwen_tokenizer(), Qwen3VLTextConfig, head_dim=HEAD_DIM, rope_parameters=rope
    )
    model = Qwen3VLForConditionalGeneration(_qwen_config(Qwen3VLConfig, text, vision))
    normalize = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}  # as the real Qwen3-VL's
    return model, _qwen_processor(Qwen3VLProcessorImageOnly, **normalize)


def build_tiny_idefics3() -> tuple[PreTrainedModel, ProcessorMixin]:
    from transformers import Idefics3ImageProcessorPil

    tokenizer = idefics3_tokenizer()
    # One unsplit 84x84 image: 6x6 patches, pixel-shuffled 2x2 into 9 tokens.
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
    )
    image_seq_len = (IMAGE_SIZE // PATCH_SIZE // MERGE_SIZE) ** 2
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=IDEFICS3_TEMPLATE,
    )
    vision = Idefics3VisionConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_size=VISION_WIDTH,
        intermediate_size=4 * VISION_WIDTH,
        num_hidden_layers=VISION_LAYERS,
        num_attention_heads=VISION_HEADS,
    )
    config = Idefics3Config(
        vision_config=vision,
        text_config=_text_config(tokenizer),
        scale_factor=MERGE_SIZE,
        image_token_id=tokenizer.image_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return Idefics3ForConditionalGeneration(config), processor


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("tiny-llava", "llava", build_tiny_llava, "LLaVA: CLIP encoder + Llama, 84 px"),
        Preset(
            "tiny-llava-alfworld",
            "llava",
            partial(build_tiny_llava, ("cards", "alfworld"), ALFWORLD_VOCAB, ALFWORLD_CONTEXT),
            "tiny-llava with ALFWorld's words in its tokenizer and a longer context",
        ),
        Preset(
            "tiny-qwen2-vl",
            "qwen2_vl",
            build_tiny_qwen2_vl,
            "Qwen2-VL: ViT with 2D RoPE and 2x2 merger + Qwen2 with M-RoPE, 84 px",
        ),
        Preset(
            "tiny-qwen2.5-vl",
            "qwen2_5_vl",
            build_tiny_qwen2_5_vl,
            "Qwen2.5-VL: windowed SwiGLU ViT + Qwen2 with M-RoPE, 84 px",
        ),
        Preset(
            "tiny-qwen3-vl",
            "qwen3_vl",
            build_tiny_qwen3_vl,
            "Qwen3-VL: ViT with DeepStack + Qwen3 with interleaved M-RoPE, 84 px",
        ),
        Preset(
            "tiny-idefics3",
            "idefics3",
            build_tiny_idefics3,
            "Idefics3/SmolVLM: SigLIP encoder, pixel-shuffle connector + Llama, 84 px",
        ),
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
