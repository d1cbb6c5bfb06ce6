"""The reset seeds of every stage, in two ranges that never meet: held-out evaluation deals
from ``EVAL_SEED_BASE`` on, and everything trained on (vision pretraining, demonstrations, PPO
rollouts) below it, so no evaluation deal is ever trained on."""

from __future__ import annotations

import numpy as np

EVAL_SEED_BASE = 1 << 32
_SEEDS_PER_EVAL_SEED = 1 << 20


def eval_seeds(episodes: int, seed: int = 0) -> list[int]:
    """The reset seeds of the held-out episodes: the same deals for every policy.

    >>> eval_seeds(2, seed=1)[0] - eval_seeds(2, seed=0)[0]
    1048576
    """
    if not 0 < episodes <= _SEEDS_PER_EVAL_SEED:
        raise ValueError(f"episodes must be in 1..{_SEEDS_PER_EVAL_SEED}, got {episodes}")
    if seed < 0:
        raise ValueError(f"seed must be 0 or more, got {seed}")
    start = EVAL_SEED_BASE + seed * _SEEDS_PER_EVAL_SEED
    return list(range(start, start + episodes))


def demonstration_seeds(episodes: int, seed: int = 0) -> list[int]:
    """The reset seeds of the demonstration episodes, all below ``EVAL_SEED_BASE``.

    They are drawn from ``np.random.default_rng(seed)``, so a seed always gives the same deals
    and no deal is one of the held-out evaluation episodes.

    >>> demonstration_seeds(3, seed=7) == demonstration_seeds(3, seed=7)
    True
    >>> all(0 <= s < EVAL_SEED_BASE for s in demonstration_seeds(100))
    True
    """
    if episodes < 1:
        raise ValueError(f"episodes must be 1 or more, got {episodes}")
    if seed < 0:
        raise ValueError(f"seed must be 0 or more, got {seed}")
    return [int(s) for s in np.random.default_rng(seed).integers(0, EVAL_SEED_BASE, episodes)]


def train_seeds(
    seed: int, update: int, process: int, num_envs: int, group_size: int = 1
) -> list[int]:
    """The reset seeds of one update's environments: below the held-out range, distinct for
    every (run seed, update, process) and environment. With ``group_size`` G, each group of
    G neighbours has seeds g * G, g * G + 1, ...: one group seed g, one deal sequence."""
    rng = np.random.default_rng([seed, update, process])
    groups = rng.integers(0, EVAL_SEED_BASE // group_size, num_envs // group_size)
    return [int(g * group_size + member) for g in groups for member in range(group_size)]
