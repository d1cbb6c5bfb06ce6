"""Generalised advantage estimation (GAE) and advantage normalisation.

Follows Stable-Baselines3's GAE, with one difference in the bookkeeping: each step carries
``next_values`` (V of the observation that followed it), so that a truncated episode can
bootstrap from its final observation even though the environment was reset right after it.
"""

from __future__ import annotations

import numpy as np
import torch


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """-> (advantages, returns), all arrays shaped (T, N): T steps of N environments.

    ``values[t]`` is V(s_t); ``next_values[t]`` is V of the observation that followed step t.
    A truncated step (time limit, or the rollout's own end) bootstraps from it; a terminated
    step ignores it (even a NaN there does no harm), because nothing follows a real ending.
    The advantage never flows across an episode boundary (terminated or truncated), and
    nothing flows in from beyond the last step, so marking the rollout's last step as
    truncated or not gives the same result.

        delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t
        A_t = delta_t + gamma * gae_lambda * (1 - done_t) * A_{t+1},   A_T = 0
        returns_t = A_t + values_t

    One episode of three steps that ends with reward 1 (lambda = 1: Monte-Carlo returns):

    >>> rewards = np.array([[0.0], [0.0], [1.0]])
    >>> values = np.full((3, 1), 0.5)
    >>> next_values = np.array([[0.5], [0.5], [0.0]])
    >>> terminated = np.array([[False], [False], [True]])
    >>> truncated = np.zeros_like(terminated)
    >>> advantages, returns = gae(rewards, values, next_values, terminated, truncated, 0.5, 1.0)
    >>> returns.ravel().tolist()
    [0.25, 0.5, 1.0]
    >>> advantages.ravel().tolist()
    [-0.25, 0.0, 0.5]
    """
    arrays = {
        "rewards": np.asarray(rewards),
        "values": np.asarray(values),
        "next_values": np.asarray(next_values),
        "terminated": np.asarray(terminated),
        "truncated": np.asarray(truncated),
    }
    shapes = {array.shape for array in arrays.values()}
    if len(shapes) != 1 or arrays["rewards"].ndim != 2:
        got = ", ".join(f"{name} {array.shape}" for name, array in arrays.items())
        raise ValueError(f"gae needs five arrays of one shape (T steps, N envs); got {got}")
    if not (0.0 <= gamma <= 1.0 and 0.0 <= gae_lambda <= 1.0):
        raise ValueError(f"gamma and gae_lambda must lie in [0, 1]; got {gamma}, {gae_lambda}")

    # float64 inside: a long backward recursion in float32 drifts from the hand computation.
    rewards, values, next_values = (
        arrays[name].astype(np.float64) for name in ("rewards", "values", "next_values")
    )
    terminated = arrays["terminated"].astype(bool)
    done = terminated | arrays["truncated"].astype(bool)

    deltas = rewards + gamma * np.where(terminated, 0.0, next_values) - values
    advantages = np.zeros_like(deltas)
    next_advantage = np.zeros(deltas.shape[1])
    for t in reversed(range(deltas.shape[0])):
        next_advantage = deltas[t] + gamma * gae_lambda * np.where(done[t], 0.0, next_advantage)
        advantages[t] = next_advantage
    returns = advantages + values
    return advantages.astype(np.float32), returns.astype(np.float32)


def normalize(advantages: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean and unit (sample) standard deviation, as CleanRL and Stable-Baselines3 do.

    Normalise over the whole rollout, not per minibatch: the paper's minibatch is a single
    sample. A single element has no spread to scale by, so it becomes 0 (its deviation from
    its own mean) rather than the NaN that its undefined sample std would give; that a lone
    advantage carries no signal once normalised is the reason not to normalise per sample.
    The input is not modified.

    >>> normalize(torch.tensor([1.0, 2.0, 3.0]))
    tensor([-1.,  0.,  1.])
    >>> normalize(torch.tensor([5.0]))
    tensor([0.])
    """
    if advantages.numel() < 2:
        return torch.zeros_like(advantages)
    return (advantages - advantages.mean()) / (advantages.std() + eps)
