"""A VLM as an actor-critic: batched generation, and batched scoring of the replies.

Generation records, while it samples, each reply token's log-prob and the critic's value, so
a rollout needs no second forward pass. Scoring lays out each sequence exactly as generation
did (left-padded prompt, then the reply) and runs one forward pass for the whole batch with
gradients. Both read the same distribution (raw logits / temperature, suppressed tokens
masked) and the same hidden state, so in float32 the log-probs recorded at rollout time are
what the training pass computes at the same weights, within 1e-5. Under bf16 autocast the two
round differently; the PPO trainer therefore takes its old log-probs from ``score``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoModelForImageTextToText,
    BatchFeature,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    ProcessorMixin,
)

from rlvlm.config import RLVLM_FILE, looks_like_hub_id
from rlvlm.io import atomic_directory, read_json, saved_dir, write_json
from rlvlm.models.families import Family, family_of
from rlvlm.models.presets import PRESETS, build_preset
from rlvlm.models.spans import action_start
from rlvlm.models.value_head import ValueHead

CHECKPOINT_FORMAT = 1
VALUE_HEAD_FILE = "value_head.safetensors"
#: Every setting of transformers' ``generate`` that reshapes the next-token distribution, at
#: its neutral value. A checkpoint's own ``generation_config`` (a repetition penalty, top-k, a
#: minimum length, ...) fills in whatever a call leaves unset, and scoring applies none of it:
#: replies must be sampled from exactly the distribution that training scores.
NEUTRAL_SAMPLING: dict[str, Any] = {
    "top_k": None,
    "min_p": None,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "min_length": 0,
    "min_new_tokens": None,
    "bad_words_ids": None,
    "sequence_bias": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "renormalize_logits": False,
    "exponential_decay_length_penalty": None,
    "num_beams": 1,
    "guidance_scale": None,
    "watermarking_config": None,
}


class Scores(NamedTuple):
    """Per-token log-probs of a batch of replies, their masks, and the critic's values."""

    values: torch.Tensor  # (B,) float32
    token_logprobs: torch.Tensor  # (B, R) float32, 0 at padding
    reply_mask: torch.Tensor  # (B, R) bool: real reply tokens
    action_mask: torch.Tensor  # (B, R) bool: tokens from the last "action" key on
    has_action: torch.Tensor  # (B,) bool: False is a format error
    token_entropy: torch.Tensor  # (B, R) float32: the sampling distribution's, 0 at padding

    @property
    def entropy(self) -> torch.Tensor:
        """(B,) mean per-token entropy of each reply."""
        return self.token_entropy.sum(-1) / self.reply_mask.sum(-1).clamp(min=1)

    @property
    def thought_logprob(self) -> torch.Tensor:
        return (self.token_logprobs * (self.reply_mask & ~self.action_mask)).sum(-1)

    @property
    def action_logprob(self) -> torch.Tensor:
        return (self.token_logprobs * self.action_mask).sum(-1)

    def logprob(self, thought_coef: float) -> torch.Tensor:
        """``lambda * log p(thought) + log p(action)``, the policy's log-prob of each reply.

        A reply without an action key has only thought tokens, so its log-prob is
        ``lambda * log p(reply)``: real, never a made-up constant, and flagged by
        ``has_action``.
        """
        return thought_coef * self.thought_logprob + self.action_logprob


class ContextTooLong(ValueError):
    """A prompt and its reply need more positions than the language model has."""


class Generation(NamedTuple):
    reply_ids: list[list[int]]  # each ends with the end-of-sequence token if the model stopped
    texts: list[str]
    scores: Scores  # recorded while sampling, without gradients: what ``score`` would give


class VLMPolicy(nn.Module):
    """A Hugging Face image-text-to-text model, its processor, and a value head."""

    def __init__(
        self,
        model: PreTrainedModel,
        processor: ProcessorMixin,
        family: Family,
        value_head: ValueHead | None = None,
        base: str | None = None,
        image_size: int | None = None,
        prompt: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.model, self.processor, self.family = model, processor, family
        hidden_size = model.config.get_text_config().hidden_size
        self.value_head = value_head or ValueHead(hidden_size)
        self.base = base or model.config.name_or_path
        #: The side of the images the envs render for this model (the paper's 300 for real
        #: checkpoints, whose processors resize anyway; a tiny preset's native size).
        self.image_size = image_size or 300
        #: How the model was trained to be asked, ``{"cot": bool, "history": int}`` (None
        #: before any training): its checkpoints keep it, so evaluation asks the same way.
        self.prompt = prompt
        self.autocast_dtype: torch.dtype | None = None  # e.g. torch.bfloat16

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @property
    def eos_token_ids(self) -> set[int]:
        configured = self.model.generation_config.eos_token_id
        ids = configured if isinstance(configured, list) else [configured]
        return {i for i in [*ids, self.tokenizer.eos_token_id] if i is not None}

    @property
    def pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else min(self.eos_token_ids)

    @cached_property
    def suppressed_token_ids(self) -> list[int]:
        """Special tokens a reply may not contain (image placeholders, padding, turn markers),
        and the ids past the tokenizer's (an embedding matrix's padding rows, which no text
        spells): masked out in generation and in scoring alike, so both see one distribution."""
        special = {i for i, token in self.tokenizer.added_tokens_decoder.items() if token.special}
        special |= {self.pad_token_id, getattr(self.tokenizer, "image_token_id", None)}
        rows = self.model.get_output_embeddings().weight.shape[0]
        special |= set(range(len(self.tokenizer), rows))
        return sorted(i for i in special - self.eos_token_ids if i is not None)

    def chat_prompt(self, prompt: str) -> str:
        """The game prompt inside the model's own chat template, after one image."""
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}
        ]
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )

    @property
    def context_length(self) -> int | None:
        """The positions the language model was built for; None where its config is silent."""
        return getattr(self.model.config.get_text_config(), "max_position_embeddings", None)

    def encode(
        self, images: Sequence[np.ndarray], prompts: Sequence[str], reply_tokens: int = 0
    ) -> BatchFeature:
        """Model inputs for a batch of (image, prompt) pairs, left-padded.

        Raises ``ContextTooLong`` when the longest prompt and ``reply_tokens`` more would not
        fit the context: past it, positions extrapolate silently, and nothing else says so.
        """
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        self.tokenizer.padding_side = "left"
        texts = [self.chat_prompt(prompt) for prompt in prompts]
        inputs = self.processor(images=list(images), text=texts, padding=True, return_tensors="pt")
        prompt_tokens, context = inputs["input_ids"].shape[1], self.context_length
        if context is not None and prompt_tokens + reply_tokens > context:
            raise ContextTooLong(
                f"a prompt of {prompt_tokens} tokens (image included) and a reply of up to "
                f"{reply_tokens} need {prompt_tokens + reply_tokens} positions, more than the "
                f"{context} of {self.base}: shorten the prompt (fewer history steps) or the "
                "reply's token limit, or use a model with a longer context"
            )
        return inputs.to(self.device)

    @torch.no_grad()
    def generate(
        self,
        images: Sequence[np.ndarray],
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.2,
        top_p: float = 1.0,
    ) -> Generation:
        """Replies for a whole batch at once (KV cache; greedy when temperature is 0), with
        their scores at the sampling temperature (at 1 for greedy replies)."""
        inputs = self.encode(images, prompts, max_new_tokens)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}
        recorder = _SampledLogprobs(temperature or 1.0, self.suppressed_token_ids)
        with self._autocast(), self._lm_head_inputs() as hidden:
            sequences = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                pad_token_id=self.pad_token_id,
                eos_token_id=sorted(self.eos_token_ids),
                suppress_tokens=self.suppressed_token_ids,
                logits_processor=LogitsProcessorList([recorder]),
                **NEUTRAL_SAMPLING,
                **(sampling if temperature > 0 else {"do_sample": False}),
            )
        new_tokens = sequences[:, inputs["input_ids"].shape[1] :]
        replies = [self._until_eos(tokens) for tokens in new_tokens.tolist()]
        texts = self.tokenizer.batch_decode(replies, skip_special_tokens=True)
        token_logprobs, entropy = recorder.finish(new_tokens[:, -1])
        tensors = self._reply_tensors(replies)
        length = tensors.mask.shape[1]
        values = self.value_head(hidden[0][:, -1])  # the prefill's last prompt token
        token_logprobs, entropy = token_logprobs[:, :length], entropy[:, :length]
        return Generation(replies, texts, self._scores(values, token_logprobs, entropy, tensors))

    @torch.no_grad()
    def values(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> torch.Tensor:
        """The critic's values of (image, prompt) states, from a pass over the prompts only."""
        inputs = self.encode(images, prompts)
        with self._autocast(), self._lm_head_inputs() as hidden:
            self.model(**inputs, logits_to_keep=1)
        return self.value_head(hidden[0][:, -1])

    def forward(self, inputs: ScoringInputs, temperature: float = 1.0) -> Scores:
        """``score_inputs``, as the module's forward, so that data-parallel wrappers see it."""
        return self.score_inputs(inputs, temperature=temperature)

    @contextmanager
    def _lm_head_inputs(self) -> Iterator[list[torch.Tensor]]:
        """The hidden states the LM head reads, call by call; the value head reads them too."""
        captured: list[torch.Tensor] = []
        head = self.model.get_output_embeddings()
        handle = head.register_forward_pre_hook(lambda _, args: captured.append(args[0]))
        try:
            yield captured
        finally:
            handle.remove()

    def _until_eos(self, tokens: list[int]) -> list[int]:
        eos = self.eos_token_ids
        for i, token in enumerate(tokens):
            if token in eos:
                return tokens[: i + 1]
        return tokens

    def score(
        self,
        images: Sequence[np.ndarray],
        prompts: Sequence[str],
        reply_ids: Sequence[Sequence[int]],
        *,
        temperature: float = 1.0,
    ) -> Scores:
        """Values and reply log-probs for a batch, in one forward pass (with gradients).

        Log-probs are those of the sampling distribution ``softmax(logits / temperature)``;
        top-p truncation is not applied.
        """
        inputs = self.scoring_inputs(images, prompts, reply_ids)
        return self.score_inputs(inputs, temperature=temperature)

    def scoring_inputs(
        self,
        images: Sequence[np.ndarray],
        prompts: Sequence[str],
        reply_ids: Sequence[Sequence[int]],
    ) -> ScoringInputs:
        """What scoring reads of a batch of transitions, for ``score_inputs``; made once for a
        whole rollout, it serves every minibatch of every epoch through ``take``."""
        if len(reply_ids) != len(prompts):
            raise ValueError(f"{len(reply_ids)} replies for {len(prompts)} prompts")
        replies = _ReplyTensors(*(t.cpu() for t in self._reply_tensors(reply_ids)))
        encoded = self.encode(images, prompts, replies.ids.shape[1])
        inputs = {key: value.cpu() for key, value in encoded.items()}
        token_keys = ("input_ids", "attention_mask", *self.family.token_inputs)
        return ScoringInputs(inputs, replies, tuple(k for k in token_keys if k in inputs))

    def score_inputs(self, inputs: ScoringInputs, *, temperature: float = 1.0) -> Scores:
        """``score`` of transitions already encoded (see ``scoring_inputs``)."""
        inputs = inputs.to(self.device)
        replies = inputs.replies
        model_inputs = dict(inputs.inputs)
        model_inputs["input_ids"] = torch.cat([model_inputs["input_ids"], replies.ids], dim=1)
        model_inputs["attention_mask"] = torch.cat(
            [model_inputs["attention_mask"], replies.mask.long()], dim=1
        )
        for key in self.family.token_inputs:  # e.g. Qwen's mm_token_type_ids: replies are text
            if key in model_inputs:
                model_inputs[key] = torch.cat([model_inputs[key], torch.zeros_like(replies.ids)], 1)
        length = replies.ids.shape[1]
        with self._autocast(), self._lm_head_inputs() as hidden:
            # Logits only where a reply token is predicted: from the last prompt token on.
            logits = self.model(**model_inputs, logits_to_keep=length + 1).logits[:, :-1]
        logprobs = _log_softmax(logits, temperature, self.suppressed_token_ids)
        token_logprobs = logprobs.gather(-1, replies.ids.unsqueeze(-1)).squeeze(-1)
        values = self.value_head(hidden[0][:, -(length + 1)])  # the last prompt token
        return self._scores(values, token_logprobs, _entropy(logprobs), replies)

    def _reply_tensors(self, reply_ids: Sequence[Sequence[int]]) -> _ReplyTensors:
        """Replies right-padded into one tensor, with the masks of their tokens and actions."""
        length = max(1, *(len(reply) for reply in reply_ids))
        ids = torch.full((len(reply_ids), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        action_mask = torch.zeros_like(mask)
        for i, reply in enumerate(reply_ids):
            ids[i, : len(reply)] = torch.as_tensor(list(reply), dtype=torch.long)
            mask[i, : len(reply)] = True
            start = action_start(self.tokenizer, reply) if len(reply) else None
            if start is not None:
                action_mask[i, start : len(reply)] = True
        return _ReplyTensors(*(t.to(self.device) for t in (ids, mask, action_mask)))

    @staticmethod
    def _scores(values, token_logprobs, token_entropy, replies: _ReplyTensors) -> Scores:
        # where(), not a product: padding is a suppressed token, whose log-prob is -inf.
        token_logprobs = torch.where(replies.mask, token_logprobs, 0.0)
        token_entropy = torch.where(replies.mask, token_entropy, 0.0)
        return Scores(
            values,
            token_logprobs,
            replies.mask,
            replies.action_mask,
            replies.action_mask.any(-1),
            token_entropy,
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a checkpoint directory atomically; a crash leaves any previous one intact.

        It holds the model (or its LoRA adapter) and processor in Hugging Face format, the
        value head as safetensors, and ``rlvlm.json``.
        """
        path = Path(path)
        with atomic_directory(path) as staging:
            self.model.save_pretrained(staging)
            self.processor.save_pretrained(staging)
            head = {
                k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()
            }
            save_file(head, staging / VALUE_HEAD_FILE)
            meta = {
                "format": CHECKPOINT_FORMAT,
                "family": self.family.name,
                "base": self.base,
                "image_size": self.image_size,
                "lora": _is_peft(self.model),
            }
            if self.prompt is not None:
                meta["prompt"] = self.prompt
            write_json(staging / RLVLM_FILE, meta)
        return path


class _ReplyTensors(NamedTuple):
    ids: torch.Tensor  # (B, R) long, right-padded
    mask: torch.Tensor  # (B, R) bool: real reply tokens
    action_mask: torch.Tensor  # (B, R) bool: tokens from the last "action" key on


class ScoringInputs(NamedTuple):
    """A batch of transitions as scoring reads them: the processor's tensors (prompts
    left-padded) and the replies' tensors with their action spans.

    PPO scores each transition of a rollout once per epoch and once more for its old
    log-probs; made once per rollout, these spare every pass the processor and the search
    for the action spans. ``take`` lays out a minibatch exactly as encoding it alone would.
    """

    inputs: dict[str, torch.Tensor]
    replies: _ReplyTensors
    token_keys: tuple[str, ...]  # the inputs laid out token for token, like input_ids

    def __len__(self) -> int:
        return self.replies.ids.shape[0]

    def take(self, index: Sequence[int] | np.ndarray) -> ScoringInputs:
        """The transitions at ``index``, without the padding that none of them needs."""
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        count = len(self)
        used = self.inputs["attention_mask"][index].any(0)
        first = int(used.int().argmax())  # the first prompt column any of them uses
        inputs = {}
        for key, tensor in self.inputs.items():
            if key in self.token_keys:
                inputs[key] = tensor[index, first:]
            else:  # per image, one image per transition: its rows (Qwen: its patches)
                if tensor.shape[0] % count:
                    raise ValueError(f"{key} has {tensor.shape[0]} rows for {count} images")
                rows = tensor.reshape(count, -1, *tensor.shape[1:])[index]
                inputs[key] = rows.reshape(-1, *tensor.shape[1:])
        length = max(1, int(self.replies.mask[index].sum(-1).max()))
        replies = _ReplyTensors(*(t[index, :length] for t in self.replies))
        return ScoringInputs(inputs, replies, self.token_keys)

    def to(self, device: torch.device) -> ScoringInputs:
        inputs = {key: value.to(device) for key, value in self.inputs.items()}
        replies = _ReplyTensors(*(t.to(device) for t in self.replies))
        return ScoringInputs(inputs, replies, self.token_keys)


def _log_softmax(logits: torch.Tensor, temperature: float, suppressed: list[int]) -> torch.Tensor:
    """The sampling distribution's log-probs, in float32, with suppressed tokens at -inf."""
    logits = logits.float() / temperature
    logits[..., suppressed] = float("-inf")
    return torch.log_softmax(logits, dim=-1)


def _entropy(logprobs: torch.Tensor) -> torch.Tensor:
    """Entropy over the last axis; suppressed tokens (log-prob -inf) add nothing."""
    return -(logprobs.exp() * logprobs.clamp(min=torch.finfo(logprobs.dtype).min)).sum(-1)


class _SampledLogprobs(LogitsProcessor):
    """Records the log-prob of each token ``generate`` samples, under the distribution that
    ``score`` computes. It sees the raw logits (before temperature and top-p) and learns which
    token was taken from the next call's ``input_ids``, or from ``finish`` for the last one."""

    def __init__(self, temperature: float, suppressed: list[int]):
        self.temperature, self.suppressed = temperature, suppressed
        self.logprobs: list[torch.Tensor] = []
        self.entropy: list[torch.Tensor] = []
        self._pending: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._take(input_ids[:, -1])
        self._pending = _log_softmax(scores, self.temperature, self.suppressed)
        self.entropy.append(_entropy(self._pending))
        return scores

    def _take(self, tokens: torch.Tensor) -> None:
        if self._pending is not None:
            self.logprobs.append(self._pending.gather(-1, tokens[:, None]).squeeze(-1))
            self._pending = None

    def finish(self, last_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, new tokens) log-probs and entropies, given the tokens sampled last."""
        self._take(last_tokens)
        return torch.stack(self.logprobs, dim=1), torch.stack(self.entropy, dim=1)


def _is_peft(model: nn.Module) -> bool:
    return hasattr(model, "peft_config")


def load_policy(
    name_or_path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
) -> VLMPolicy:
    """A policy from a tiny preset's name, a checkpoint directory, or a hub id such as
    ``llava-hf/llava-1.5-7b-hf`` where the network allows.

    The directory may be an rlvlm checkpoint or a plain Hugging Face one (a LLaVA or
    Qwen2-VL download, say), which then gets a value head freshly initialised from ``seed``.
    ``dtype`` is the weights' (None: the checkpoint's own; a tiny preset's is float32); the
    value head is always float32.
    """
    name = str(name_or_path)
    if name in PRESETS:
        model, processor = build_preset(name, seed=seed)
        model = model if dtype is None else model.to(dtype)
        family = family_of(model.config)
        value_head = ValueHead(model.config.get_text_config().hidden_size, seed)
        policy = VLMPolicy(
            model, processor, family, value_head, image_size=PRESETS[name].image_size
        )
        return fit_attention(policy.to(device))
    path, meta, hub_id = _locate(name)
    source = name if hub_id else path
    if meta and meta.get("lora"):
        model, family = _load_adapter(path, meta, dtype, seed)
    else:
        try:
            model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype or "auto")
        except OSError as error:  # a hub id that cannot be fetched (no network, no such model)
            reason = str(error).strip().splitlines()[0]
            raise ValueError(f"cannot load {name!r}: {reason}") from None
        family = family_of(model.config)
    processor = family.load_processor(source)
    value_head = ValueHead(model.config.get_text_config().hidden_size, seed)
    if (path / VALUE_HEAD_FILE).is_file():
        value_head.load_state_dict(load_file(path / VALUE_HEAD_FILE))
    base = meta.get("base") if meta else str(path)
    size, prompt = (meta.get("image_size"), meta.get("prompt")) if meta else (None, None)
    policy = VLMPolicy(model.eval(), processor, family, value_head, base, size, prompt)
    return fit_attention(policy.to(device))


def fit_attention(policy: VLMPolicy) -> VLMPolicy:
    """Plain (eager) attention on a CPU: there, PyTorch's fused attention kernel is slower
    for short sequences, and its backward pass much slower (measured on the tiny presets:
    training passes 1.4x and generation 1.2x faster without it). GPUs keep the default."""
    if policy.device.type == "cpu":
        policy.model.set_attn_implementation("eager")
    return policy


def check_loadable(name_or_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Raise ``load_policy``'s ValueError for a name it could never load, without loading
    anything: a cheap check before a job writes its first file. The checkpoint's
    ``rlvlm.json``, if it has one."""
    if str(name_or_path) in PRESETS:
        return None
    return _locate(str(name_or_path))[1]


def _locate(name: str) -> tuple[Path, dict[str, Any] | None, bool]:
    """The checkpoint directory ``name`` names, its rlvlm.json if any, and whether it is
    rather a hub id; a ValueError for anything else or for an unsupported family."""
    path = saved_dir(name)
    meta = read_json(path / RLVLM_FILE)
    hub_id = looks_like_hub_id(name) and not path.exists()
    lora = bool(meta and meta.get("lora"))
    if not (path / "config.json").is_file() and not lora and not hub_id:
        raise ValueError(
            f"{name!r} is neither a preset ({', '.join(PRESETS)}) nor a checkpoint directory "
            "(no config.json there)"
        )
    if not hub_id and not lora:
        family_of(read_json(path / "config.json"))  # an unsupported family fails here, clearly
    return path, meta, hub_id


def _load_adapter(path: Path, meta: dict[str, Any], dtype, seed: int):
    from peft import PeftModel

    base = load_policy(meta["base"], dtype=dtype, seed=seed).model
    with peft_quietly():
        model = PeftModel.from_pretrained(base, path, is_trainable=True)
    return model, family_of(base.config)


@contextmanager
def peft_quietly() -> Iterator[None]:
    """PEFT reads transformers' deprecated alias ``is_gradient_checkpointing``: a FutureWarning
    about code that is not ours, with nothing for a user to do."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        yield
