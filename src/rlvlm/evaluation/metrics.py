"""Summary figures of a set of episodes, in the paper's terms."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from rlvlm.evaluation.episodes import Episode


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95 % by default).

    >>> [round(x, 4) for x in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    """
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    scale = 1 + z * z / trials
    # Exact ends: rounding must not put a rate of 0 or 1 outside its own interval.
    low = 0.0 if successes == 0 else max(0.0, (centre - spread) / scale)
    high = 1.0 if successes == trials else min(1.0, (centre + spread) / scale)
    return low, high


def thought_accuracy(checks: Iterable[tuple[tuple[str, bool], ...]]) -> dict[str, Any]:
    """``thought_accuracy``, the share of checked replies whose stated facts are all true,
    and ``fact_accuracy``, the share for each fact; empty when no reply was checked.

    >>> thought_accuracy([(("cards", True), ("total", True)), (("cards", True), ("total", False))])
    {'thought_accuracy': 0.5, 'fact_accuracy': {'cards': 1.0, 'total': 0.5}}
    >>> thought_accuracy([])
    {}
    """
    checks = [dict(check) for check in checks if check]
    if not checks:
        return {}
    return {
        "thought_accuracy": float(np.mean([all(check.values()) for check in checks])),
        "fact_accuracy": {fact: float(np.mean([c[fact] for c in checks])) for fact in checks[0]},
    }


def _figures(episodes: Sequence[Episode]) -> dict[str, Any]:
    returns = np.array([e.episode_return for e in episodes], dtype=float)
    steps = sum(e.length for e in episodes)
    wins = sum(e.success for e in episodes)
    return {
        "episodes": len(episodes),
        "success_rate": wins / len(episodes),
        "success_ci95": list(wilson_interval(wins, len(episodes))),
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "mean_length": steps / len(episodes),
        "format_error_rate": sum(e.format_errors for e in episodes) / max(steps, 1),
        "invalid_action_rate": sum(e.invalid_actions for e in episodes) / max(steps, 1),
        **thought_accuracy(check for e in episodes for check in e.thought_checks),
    }


def summarize(episodes: Sequence[Episode], game: str, policy: str) -> dict[str, Any]:
    """The evaluation result: success is an episode return above 0, as in the paper (for
    ALFWorld, a won task, as the paper counts it there).

    Error rates are per step. ``per_task`` holds the same figures per task type for games
    that have task types, and is empty otherwise.
    """
    if not episodes:
        raise ValueError("no episodes to summarise")
    by_task: dict[str, list[Episode]] = defaultdict(list)
    for episode in episodes:
        if episode.task_type is not None:
            by_task[episode.task_type].append(episode)
    per_task = {task: _figures(group) for task, group in sorted(by_task.items())}
    return {"game": game, "policy": policy, **_figures(episodes), "per_task": per_task}
