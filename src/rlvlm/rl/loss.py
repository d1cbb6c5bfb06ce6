"""The PPO loss, as in CleanRL's ``ppo.py``: one pure function over per-sample tensors.

A sample is one whole reply: its log-probability is the lambda-weighted sum over its thought
and action tokens, computed upstream, so the loss itself knows nothing about tokens.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class PPOLoss(NamedTuple):
    loss: torch.Tensor  # scalar, what backward() gets
    policy_loss: torch.Tensor  # scalar
    value_loss: torch.Tensor  # scalar (already 0.5 * mean squared error, before vf_coef)
    entropy: torch.Tensor  # scalar mean entropy (0 when not given)
    approx_kl: torch.Tensor  # scalar, no grad: mean((ratio - 1) - log ratio)
    clipfrac: torch.Tensor  # scalar, no grad: fraction with |ratio - 1| > clip_coef


def _mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the kept samples (masked ones are zero already); 0, not NaN, if none is kept."""
    return x.mean() if mask is None else x.sum() / mask.sum().clamp(min=1)


def ppo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    *,
    clip_coef: float,
    vf_coef: float,
    clip_vloss: bool = True,
    vf_clip: float | None = None,
    entropy: torch.Tensor | None = None,
    ent_coef: float = 0.0,
    mask: torch.Tensor | None = None,
) -> PPOLoss:
    """Clipped PPO objective, clipped value loss and entropy bonus, all tensors shaped (B,).

    Gradients flow through ``logprobs``, ``values`` and ``entropy`` only; the rollout's
    tensors are detached. ``mask`` (bool) drops samples from every mean: they are zeroed
    before any arithmetic, so no value in them reaches a result or a gradient.
    ``vf_clip`` defaults to ``clip_coef``, as in CleanRL.
    """
    _check(
        logprobs=logprobs,
        old_logprobs=old_logprobs,
        advantages=advantages,
        values=values,
        old_values=old_values,
        returns=returns,
        entropy=entropy,
        mask=mask,
    )
    if entropy is None and ent_coef != 0.0:
        raise ValueError(f"ent_coef={ent_coef} needs the entropy tensor; none was given")
    old_logprobs, advantages, old_values, returns = (
        x.detach() for x in (old_logprobs, advantages, old_values, returns)
    )
    if mask is not None:
        logprobs, old_logprobs, advantages, values, old_values, returns = (
            torch.where(mask, x, 0.0)
            for x in (logprobs, old_logprobs, advantages, values, old_values, returns)
        )
        entropy = None if entropy is None else torch.where(mask, entropy, 0.0)

    logratio = logprobs - old_logprobs
    ratio = logratio.exp()
    with torch.no_grad():
        approx_kl = _mean((ratio - 1) - logratio, mask)
        clipfrac = _mean(((ratio - 1.0).abs() > clip_coef).to(ratio.dtype), mask)

    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
    pg_loss = _mean(torch.max(pg_loss1, pg_loss2), mask)

    v_loss_unclipped = (values - returns) ** 2
    if clip_vloss:
        clip = clip_coef if vf_clip is None else vf_clip
        v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        v_loss_clipped = (v_clipped - returns) ** 2
        v_loss = 0.5 * _mean(torch.max(v_loss_unclipped, v_loss_clipped), mask)
    else:
        v_loss = 0.5 * _mean(v_loss_unclipped, mask)

    entropy_loss = logprobs.new_zeros(()) if entropy is None else _mean(entropy, mask)
    loss = pg_loss - ent_coef * entropy_loss + vf_coef * v_loss
    return PPOLoss(loss, pg_loss, v_loss, entropy_loss, approx_kl, clipfrac)


def _check(**tensors: torch.Tensor | None) -> None:
    """One shape for every per-sample tensor: (B, 1) against (B,) would broadcast silently."""
    given = {name: t for name, t in tensors.items() if t is not None}
    if len({t.shape for t in given.values()}) != 1 or given["logprobs"].dim() != 1:
        got = ", ".join(f"{name} {tuple(t.shape)}" for name, t in given.items())
        raise ValueError(f"ppo_loss needs 1-D tensors of one shape (B,); got {got}")
    if "mask" in given and given["mask"].dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor; got {given['mask'].dtype}")
