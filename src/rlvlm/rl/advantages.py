"""Advantages: generalised advantage estimation (GAE) with the critic, group-relative ones
without it (GRPO, GiGPO), and normalisation.

GAE follows Stable-Baselines3's, with one difference in the bookkeeping: each step carries
``next_values`` (V of the observation that followed it), so that a truncated episode can
bootstrap from its final observation even though the environment was reset right after it.
The group estimators follow DeepSeekMath's GRPO and verl-agent's GiGPO, for a rollout whose
environments come in groups that share their deals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from typing import NamedTuple

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


class _Episode(NamedTuple):
    env: int
    ordinal: int  # the how-manieth episode of its environment in this rollout (from 0)
    steps: np.ndarray  # its steps' indices, in order


def finished_episodes(terminated: np.ndarray, truncated: np.ndarray) -> list[_Episode]:
    """The episodes of a (T, N) rollout that ended within it: terminated, or truncated by the
    game's step limit before the last step (where the rollout itself cuts every episode).

    One environment, four steps: an episode that ends at step 1, one the step limit ends at
    step 2, and one the rollout cuts at step 3.

    >>> terminated = np.array([[False], [True], [False], [False]])
    >>> truncated = np.array([[False], [False], [True], [True]])
    >>> [(e.env, e.ordinal, e.steps.tolist()) for e in finished_episodes(terminated, truncated)]
    [(0, 0, [0, 1]), (0, 1, [2])]
    """
    last = len(terminated) - 1
    episodes = []
    for env in range(terminated.shape[1]):
        start, ordinal = 0, 0
        for t in range(last + 1):
            if terminated[t, env] or truncated[t, env]:
                if terminated[t, env] or t < last:
                    episodes.append(_Episode(env, ordinal, np.arange(start, t + 1)))
                start, ordinal = t + 1, ordinal + 1
    return episodes


def group_advantages(
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    group_size: int,
    *,
    states: np.ndarray | None = None,
    gamma: float = 1.0,
    step_weight: float = 1.0,
    scale: bool = True,
    eps: float = 1e-6,
) -> np.ndarray:
    """GRPO's advantages, or GiGPO's when ``states`` is given; (T, N) like the rollout.

    The environments come in groups of ``group_size`` neighbours (0 .. G-1, G .. 2G-1, ...)
    that share each reset seed, so the k-th episodes of a group's environments start from one
    deal and form an episode group. Each finished episode's return (its rewards' sum), minus
    its group's mean and divided by its group's standard deviation (``scale``; without it,
    Dr. GRPO's), is every one of its steps' advantage.

    GiGPO adds a step level: within an episode group, the steps whose observations are the
    same (equal ``states[t, env]`` keys) form a step group; each step's discounted return from
    there (``gamma``) is normalised within its step group in the same way, and added with the
    weight ``step_weight``.

    An episode the rollout's end cut off has no return yet: its steps get 0 and it joins no
    group. A group of one, or of equal returns, has no spread to learn from: 0 as well.

    Two environments in one group: one wins 1 in two steps, the other loses in one step and
    its next episode is cut off. The standard deviation of (1, 0) is 0.71:

    >>> rewards = np.array([[0.0, 0.0], [1.0, 0.0]])
    >>> terminated = np.array([[False, True], [True, False]])
    >>> truncated = np.array([[False, False], [False, True]])
    >>> advantages = group_advantages(rewards, terminated, truncated, 2)
    >>> advantages.astype(float).round(2).tolist()
    [[0.71, -0.71], [0.71, 0.0]]

    With GiGPO, their first steps saw the same state, from which one went on to return 1 (as
    gamma is 1) and the other 0: a step group that doubles those steps' advantages.

    >>> states = np.array([["deal", "deal"], ["after 4", "next deal"]])
    >>> advantages = group_advantages(rewards, terminated, truncated, 2, states=states)
    >>> advantages.astype(float).round(2).tolist()
    [[1.41, -1.41], [0.71, 0.0]]
    """
    rewards = np.asarray(rewards, np.float64)
    num_envs = rewards.shape[1]
    if group_size < 1 or num_envs % group_size:
        raise ValueError(f"{num_envs} environments do not form groups of {group_size}")
    advantages = np.zeros_like(rewards)
    groups: dict[tuple[int, int], list[_Episode]] = defaultdict(list)
    for episode in finished_episodes(np.asarray(terminated), np.asarray(truncated)):
        groups[episode.env // group_size, episode.ordinal].append(episode)
    for members in groups.values():
        returns = [rewards[e.steps, e.env].sum() for e in members]
        for episode, advantage in zip(members, _relative(returns, scale, eps), strict=True):
            advantages[episode.steps, episode.env] += advantage
        if states is None:
            continue
        step_groups: dict[Hashable, list[tuple[int, int, float]]] = defaultdict(list)
        for e in members:
            to_go = 0.0
            for t in e.steps[::-1]:
                to_go = rewards[t, e.env] + gamma * to_go
                step_groups[states[t, e.env]].append((t, e.env, to_go))
        for steps in step_groups.values():
            relative = _relative([to_go for *_, to_go in steps], scale, eps)
            for (t, env, _), advantage in zip(steps, relative, strict=True):
                advantages[t, env] += step_weight * advantage
    return advantages.astype(np.float32)


def _relative(values: list[float], scale: bool, eps: float) -> np.ndarray:
    """Each value against its group's: minus the mean, over the standard deviation if
    ``scale``. A group of one compares with nothing: 0."""
    values = np.asarray(values, np.float64)
    if len(values) < 2:
        return np.zeros_like(values)
    centred = values - values.mean()
    return centred / (values.std(ddof=1) + eps) if scale else centred
