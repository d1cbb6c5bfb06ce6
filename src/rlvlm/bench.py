"""Throughput figures, each printed beside a baseline measured in the same run."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from time import perf_counter

from rlvlm.games import CARD_GAMES, make, render

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
    for game in games or list(CARD_GAMES):
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


def bench_rollout(preset: str | None = None, envs: int = 8, rounds: int = 5,
                  max_new_tokens: int = 64) -> dict[str, float]:  # fmt: skip
    """Replies per second for ``envs`` NumberLine states, each with its log-probs and value:
    batched generation, which records them while it samples, beside the reference loop that
    generates one reply and then scores it with a second forward pass, one environment at a
    time. Rounds alternate, and medians are reported."""
    import torch

    from rlvlm.models import DEFAULT_PRESET, load_policy

    torch.manual_seed(0)
    policy = load_policy(preset or DEFAULT_PRESET)
    env = make("numberline", image_size=policy.image_size)
    images, prompts = [], []
    for seed in range(envs):
        image, _ = env.reset(seed=seed)
        images.append(image)
        prompts.append(env.unwrapped.task.prompt(env.unwrapped.view()))

    def generate(batch: slice) -> list[list[int]]:
        return policy.generate(images[batch], prompts[batch], max_new_tokens=max_new_tokens,
                               temperature=1.0).reply_ids  # fmt: skip

    def batched() -> int:
        return sum(len(reply) for reply in generate(slice(0, envs)))

    def one_at_a_time() -> int:
        tokens = 0
        for i in range(envs):
            replies = generate(slice(i, i + 1))
            with torch.no_grad():  # the reference's second pass (generation recorded the same)
                policy.score(images[i : i + 1], prompts[i : i + 1], replies)
            tokens += len(replies[0])
        return tokens

    def timed(rollout: Callable[[], int]) -> tuple[float, int]:
        start = perf_counter()
        tokens = rollout()
        return perf_counter() - start, tokens

    generate(slice(0, 1))  # warm-up
    runs: dict[str, list[tuple[float, int]]] = {"batched": [], "one at a time": []}
    for _ in range(rounds):
        runs["batched"].append(timed(batched))
        runs["one at a time"].append(timed(one_at_a_time))
    figures = {}
    print(f"{'mode':<14}{'replies/s':>10}{'tokens/s':>10}")
    for mode, timings in runs.items():
        seconds = statistics.median(run[0] for run in timings)
        tokens = statistics.median(run[1] for run in timings)
        figures[mode] = envs / seconds
        print(f"{mode:<14}{envs / seconds:>10.1f}{tokens / seconds:>10.0f}")
    ratio = figures["batched"] / figures["one at a time"]
    # Each round times both modes back to back, so its ratio shows how noisy the machine is.
    per_round = sorted(slow[0] / fast[0] for fast, slow in zip(*runs.values(), strict=True))
    print(
        f"batched is {ratio:.1f}x faster ({per_round[0]:.1f}x to {per_round[-1]:.1f}x over "
        f"{rounds} rounds; {preset or DEFAULT_PRESET}, {envs} envs, {max_new_tokens} new "
        "tokens at most; target 5x)"
    )
    return {
        "batched": figures["batched"],
        "one_at_a_time": figures["one at a time"],
        "ratio": ratio,
    }


def bench_alfworld(episodes: int = 5, split: str = "valid_unseen") -> dict[str, float]:
    """Median seconds of ALFWorld's first reset of a seed (generating a game and checking that
    the expert wins it, then loading it), of a reset of a game already made, and of a step,
    over ``episodes`` episodes that the expert plays."""
    env = make("alfworld", split=split)
    game = env.unwrapped
    first, again, steps = [], [], []
    for seed in range(episodes):
        for times in (first, again):
            start = perf_counter()
            env.reset(seed=seed)
            times.append(perf_counter() - start)
        done = False
        while not done:
            start = perf_counter()
            _, _, terminated, truncated, _ = env.step(game.task.oracle_action(game.view()))
            steps.append(perf_counter() - start)
            done = terminated or truncated
    env.close()
    row = {"new_game_reset_s": statistics.median(first), "reset_s": statistics.median(again),
           "step_s": statistics.median(steps)}  # fmt: skip
    print(f"{'new game reset':>15}{'reset':>9}{'step':>9}  ({episodes} {split} episodes)")
    print(f"{row['new_game_reset_s']:>14.2f}s{row['reset_s']:>8.2f}s"
          f"{row['step_s'] * 1000:>7.0f}ms")  # fmt: skip
    return row
