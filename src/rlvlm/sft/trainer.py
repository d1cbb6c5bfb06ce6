"""Supervised fine-tuning on demonstrations: the loss on the reply tokens only."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from transformers import get_cosine_schedule_with_warmup

from rlvlm.models.policy import VLMPolicy
from rlvlm.models.training import prepare_training, trainable_parameters
from rlvlm.progress import progress_bar
from rlvlm.sft.data import Demonstration


def reply_token_ids(policy: VLMPolicy, reply: str) -> list[int]:
    """The tokens a model should generate for ``reply``: its text, then end-of-sequence."""
    ids = policy.tokenizer(reply, add_special_tokens=False)["input_ids"]
    return [*ids, policy.tokenizer.eos_token_id]


def _check_context(
    policy: VLMPolicy, demonstrations: Sequence[Demonstration], replies: list[list[int]]
) -> None:
    """Before the first step: the longest prompt (every picture takes as many tokens) with
    the longest reply, the most a batch can need, must fit the context (``ContextTooLong``)."""
    prompts = policy.tokenizer([d.prompt for d in demonstrations])["input_ids"]
    longest = demonstrations[int(np.argmax([len(p) for p in prompts]))]
    policy.encode([longest.image], [longest.prompt], max(len(r) for r in replies))


def train_sft(
    policy: VLMPolicy,
    demonstrations: Sequence[Demonstration],
    *,
    epochs: int = 1,
    lr: float = 2e-5,
    batch_size: int = 16,
    max_grad_norm: float = 1.0,
    seed: int = 0,
    accelerator: Accelerator | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Maximise the log-likelihood of each demonstrated reply given its image and prompt.

    Each process trains on its own share of every shuffled epoch; gradients are averaged
    across processes. Returns the final running loss, step count and time.
    """
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    if len(demonstrations) < accelerator.num_processes:
        raise ValueError(
            f"{len(demonstrations)} demonstrations for {accelerator.num_processes} processes"
        )
    # The loss never reaches the value head; left trainable, data-parallel training would
    # stop on parameters without a gradient.
    policy.value_head.requires_grad_(False)
    replies = [reply_token_ids(policy, demonstration.reply) for demonstration in demonstrations]
    _check_context(policy, demonstrations, replies)
    per_step = batch_size * accelerator.num_processes
    steps_per_epoch = max(len(demonstrations) // per_step, 1)
    total = steps_per_epoch * epochs
    optimizer = torch.optim.AdamW(trainable_parameters(policy), lr=lr, betas=(0.9, 0.98))
    scheduler = get_cosine_schedule_with_warmup(optimizer, min(20, total // 10), total)
    model, optimizer = prepare_training(
        accelerator,
        policy,
        optimizer,
        minibatch_size=batch_size,
        grad_accum=1,
        max_grad_norm=max_grad_norm,
    )
    rng = np.random.default_rng(seed)
    policy.train()
    running, start = None, time.perf_counter()
    bar = progress_bar(
        total=total, desc="sft", unit="step", enabled=progress and accelerator.is_main_process
    )
    for _ in range(epochs):
        order = rng.permutation(len(demonstrations))
        for step in range(steps_per_epoch):
            chunk = order[step * per_step : (step + 1) * per_step]
            mine = chunk[accelerator.process_index :: accelerator.num_processes]
            batch = [demonstrations[i] for i in mine]
            inputs = policy.scoring_inputs(
                [d.image for d in batch], [d.prompt for d in batch], [replies[i] for i in mine]
            )
            scores = model(inputs)
            loss = -scores.token_logprobs.sum() / scores.reply_mask.sum()
            if not torch.isfinite(loss):
                raise RuntimeError(f"the SFT loss became {loss.item()} at step {bar.n + 1}")
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(trainable_parameters(policy), max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            value = loss.item()
            running = value if running is None else 0.95 * running + 0.05 * value
            bar.set_postfix(loss=f"{running:.4f}", refresh=False)
            bar.update()
    bar.close()
    policy.eval()
    return {
        "loss": running,
        "steps": total,
        "seconds": round(time.perf_counter() - start, 2),
        "demonstrations": len(demonstrations),
    }
