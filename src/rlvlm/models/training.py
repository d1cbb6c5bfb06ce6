"""Choosing what trains: LoRA adapters through PEFT, or full fine-tuning with frozen parts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from rlvlm.config import MODEL_PARTS
from rlvlm.models.policy import VLMPolicy, peft_quietly

if TYPE_CHECKING:
    from accelerate import Accelerator


def _check_parts(parts: Iterable[str]) -> set[str]:
    parts = set(parts)
    if unknown := parts - set(MODEL_PARTS):
        choices = ", ".join(MODEL_PARTS)
        raise ValueError(f"unknown model parts {sorted(unknown)}; choose from {choices}")
    return parts


def lora_targets(policy: VLMPolicy, parts: Iterable[str] = MODEL_PARTS) -> list[str]:
    """Every linear layer in the chosen parts, except the output layer (tied to the input
    embeddings in many models)."""
    parts = _check_parts(parts)
    output = policy.model.get_output_embeddings()
    return [
        name
        for name, module in policy.model.named_modules()
        if isinstance(module, nn.Linear)
        and module is not output
        and policy.family.part_of(name) in parts
    ]


def add_lora(
    policy: VLMPolicy,
    rank: int = 128,
    alpha: int = 256,
    dropout: float = 0.05,
    parts: Iterable[str] = MODEL_PARTS,
) -> VLMPolicy:
    """Wrap the model in LoRA adapters on every linear layer of ``parts`` (all by default,
    vision tower included, as in the paper). Only the adapters and the value head train."""
    from peft import LoraConfig, get_peft_model

    targets = lora_targets(policy, parts)
    if not targets:
        raise ValueError(f"no linear layers in parts {sorted(parts)} of this model")
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
    training = policy.model.training
    # PEFT's new modules start in training mode; keep the model's mode whole, so that rollouts
    # (in eval mode, dropout off) score replies exactly.
    with peft_quietly():
        policy.model = get_peft_model(policy.model, config).train(training)
    return policy


def freeze(policy: VLMPolicy, parts: Iterable[str]) -> VLMPolicy:
    """Stop gradients into whole parts of the model (e.g. a pretrained vision tower)."""
    parts = _check_parts(parts)
    for name, parameter in policy.model.named_parameters():
        if policy.family.part_of(name) in parts:
            parameter.requires_grad_(False)
    return policy


def enable_gradient_checkpointing(policy: VLMPolicy) -> VLMPolicy:
    """Recompute activations in the backward pass: less memory for long replies."""
    policy.model.activation_checkpointing_enable({"use_reentrant": False})
    if hasattr(policy.model, "enable_input_require_grads"):
        policy.model.enable_input_require_grads()
    return policy


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 matrix products run fast here: a CUDA GPU that has them, or a CPU with
    AVX-512 bf16 or AMX units (oneDNN's check); elsewhere bf16 is emulated, and slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def set_precision(policy: VLMPolicy, bf16: bool) -> VLMPolicy:
    """bf16 autocast for every pass of the policy (generation, scoring, training) where the
    hardware runs it fast; the weights, the optimiser and the log-probs stay in float32."""
    policy.autocast_dtype = torch.bfloat16 if bf16 and bf16_supported(policy.device) else None
    return policy


def trainable_parameters(policy: VLMPolicy) -> list[nn.Parameter]:
    return [p for p in policy.parameters() if p.requires_grad]


def prepare_training(
    accelerator: Accelerator,
    policy: VLMPolicy,
    optimizer: torch.optim.Optimizer,
    *,
    minibatch_size: int,
    grad_accum: int,
    max_grad_norm: float,
) -> tuple[Any, Any]:
    """``accelerator.prepare(policy, optimizer)`` with the settings that must agree set here,
    from the trainer's config: how many minibatches make one optimiser step (counted by
    ``accelerator.accumulate``) and, under DeepSpeed, the engine's own copies of them, which it
    would otherwise take from its config file and silently apply instead (one step per
    minibatch, and a clipping norm of 1.0). The weights stay float32 there too: bf16 compute
    is the policy's own autocast (``model.bf16``), as on every other path.

    The accelerator trains one model at a time: whatever an earlier stage (SFT) prepared is
    let go first, so that ``save_state`` holds this model's state and nothing else."""
    accelerator.free_memory()  # also restarts the count of minibatches
    accelerator.gradient_accumulation_steps = grad_accum
    accelerator.sync_gradients = True
    if (plugin := accelerator.state.deepspeed_plugin) is not None:
        plugin.deepspeed_config.update(
            deepspeed_settings(minibatch_size, grad_accum, max_grad_norm, accelerator.num_processes)
        )
    return accelerator.prepare(policy, optimizer)


def deepspeed_settings(
    minibatch_size: int, grad_accum: int, max_grad_norm: float, processes: int
) -> dict[str, Any]:
    """The DeepSpeed config entries that follow from the trainer's settings."""
    return {
        "train_micro_batch_size_per_gpu": minibatch_size,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": minibatch_size * grad_accum * processes,
        "gradient_clipping": max_grad_norm,
        "bf16": {"enabled": False},
        "fp16": {"enabled": False},
    }
