"""Throughput figures, each printed beside a baseline measured in the same run."""

from __future__ import annotations

from time import perf_counter

from rlvlm.games import GAMES, make, render

#: Steps per second each game must reach on a 2-core CPU, rendering included.
ENV_TARGETS = {"numberline": 5000, "ezpoints": 2000, "points24": 2000, "blackjack": 2000}


def env_steps_per_second(game: str, seconds: float, uncached: bool = False, seed: int = 0) -> float:
    """Random-action steps per second of one env in this process, resets included.

    ``uncached`` clears every font, sprite and picture cache before each step, which is what
    an env costs that loads its fonts and draws its cards afresh every time.
    """
    env = make(game)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    steps, start = 0, perf_counter()
    while (elapsed := perf_counter() - start) < seconds:
        if uncached:
            render.clear_caches()
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            env.reset()
    env.close()
    return steps / elapsed


def bench_envs(seconds: float = 2.0, games: list[str] | None = None) -> list[dict[str, float]]:
    """Measure every game cached and uncached, printing a row as each one finishes."""
    print(f"{'game':<12}{'steps/s':>10}{'uncached':>11}{'speed-up':>10}{'target':>9}")
    rows = []
    for game in games or list(GAMES):
        fast = env_steps_per_second(game, seconds)
        slow = env_steps_per_second(game, seconds, uncached=True)
        target = ENV_TARGETS.get(game, 0)
        verdict = "ok" if fast >= target else "BELOW"
        print(
            f"{game:<12}{fast:>10,.0f}{slow:>11,.0f}{fast / slow:>9.0f}x{target:>9,} {verdict}",
            flush=True,
        )
        rows.append({"game": game, "steps_per_s": fast, "uncached_steps_per_s": slow})
    return rows
