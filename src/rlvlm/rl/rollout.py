"""Collecting a rollout: every environment steps together on one batched generation.

Each update starts its environments afresh from seeds derived from (run seed, update,
process), so a rollout depends only on those, the weights and the torch RNG: a resumed run
replays it exactly, whether the environments run in this process or in subprocesses.
Episodes still running when the rollout ends are cut there and bootstrapped with the
critic's value, like episodes truncated by the game's step limit: the rollout keeps their
last observations, and the trainer values them all in one pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from rlvlm.games import make
from rlvlm.games.base import succeeded
from rlvlm.games.wrappers import TextActions
from rlvlm.models.policy import VLMPolicy
from rlvlm.rl.buffer import RolloutBuffer
from rlvlm.seeds import EVAL_SEED_BASE


def make_envs(
    game: str,
    num_envs: int,
    *,
    image_size: int,
    vector: Literal["sync", "async"] = "sync",
    on_invalid: Literal["random", "noop"] = "random",
    penalty: float = 1.0,
    cot: bool = True,
    history: int = 0,
    group_size: int = 1,
) -> gym.vector.VectorEnv:
    """``num_envs`` text-action copies of a game; a finished episode resets in the same step.
    With ``group_size`` G > 1, the environments whose reset seeds agree but for their last
    digit in base G play one sequence of deals (see ``SeedEachEpisode``)."""

    def make_one() -> gym.Env:
        env = make(game, image_size=image_size)
        env = SeedEachEpisode(env, group_size) if group_size > 1 else env
        return TextActions(env, on_invalid, penalty, cot, history)

    vector_cls = {"sync": SyncVectorEnv, "async": AsyncVectorEnv}[vector]
    return vector_cls([make_one] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)


class SeedEachEpisode(gym.Wrapper):
    """Deals every episode from a seed of its own, drawn from the group's seed: the first
    reset's seed divided by the group size.

    After its first episode a game deals from its own generator, which the play has moved on
    (Blackjack draws as it hits), so environments reset with one seed would soon play
    different deals. Seeded anew at each reset, a group's environments play the same sequence
    of deals however their episodes went, which is what the group estimators compare. Only
    the deals are shared: the seed itself, different for each member, still seeds what the
    wrappers above draw (the random action that stands in for an unparsable reply)."""

    def __init__(self, env: gym.Env, group_size: int):
        super().__init__(env)
        self.group_size = group_size
        self._deal_seeds: np.random.Generator | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._deal_seeds = np.random.default_rng(seed // self.group_size)
        if self._deal_seeds is not None:
            seed = int(self._deal_seeds.integers(0, EVAL_SEED_BASE))
        return self.env.reset(seed=seed, options=options)


@dataclass
class RolloutStats:
    """What one rollout saw, for the logs. Only episodes that ended within it count."""

    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    episode_successes: list[bool] = field(default_factory=list)  # as evaluation counts them
    format_errors: int = 0
    #: Per reply, whether it stated each fact of the picture truly (``TextActions``)
    thought_checks: list[tuple[tuple[str, bool], ...]] = field(default_factory=list)
    steps: int = 0
    reply_tokens: int = 0
    thought_logprob: float = 0.0  # summed over replies
    action_logprob: float = 0.0
    seconds: float = 0.0

    def cut_short(self, num_envs: int, steps_per_env: int) -> str | None:
        """A warning when the rollout ended fewer episodes than it has environments: each
        rollout starts new episodes, so one cut by its end is never finished: its outcome
        reaches the policy only through the critic's estimate, or not at all without one."""
        ended = len(self.episode_lengths)
        if ended >= num_envs:
            return None
        return (
            f"warning: a rollout of {num_envs} environments x {steps_per_env} steps ended "
            f"only {ended} episodes; raise ppo.steps_per_env above the game's episode length"
        )


def collect(
    policy: VLMPolicy,
    envs: gym.vector.VectorEnv,
    buffer: RolloutBuffer,
    seeds: list[int],
    *,
    thought_coef: float,
    temperature: float,
    top_p: float = 1.0,
    max_new_tokens: int = 256,
    should_stop: Callable[[], bool] = lambda: False,
) -> RolloutStats | None:
    """Fill ``buffer`` with one rollout; None if ``should_stop`` said so before it was full."""
    start = time.perf_counter()
    stats = RolloutStats()
    observations, infos = envs.reset(seed=seeds)
    prompts = list(infos["prompt"])
    returns = np.zeros(envs.num_envs)
    lengths = np.zeros(envs.num_envs, int)
    for t in range(buffer.steps):
        if should_stop():
            return None
        images = list(observations)
        generation = policy.generate(
            images, prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p
        )
        scores = generation.scores
        observations, rewards, terminated, truncated, infos = envs.step(tuple(generation.texts))
        next_prompts = list(infos["prompt"])
        ended = terminated | truncated
        if t == buffer.steps - 1:  # the rollout's end cuts every running episode
            truncated = truncated | ~terminated
        for i in np.flatnonzero(truncated):  # bootstrapped later from the last observation
            final = (
                (observations[i], next_prompts[i])
                if not ended[i]
                else (infos["final_obs"][i], infos["final_info"]["prompt"][i])
            )
            buffer.final_observations[t, i] = final
        buffer.add(
            images,
            prompts,
            generation.reply_ids,
            scores.logprob(thought_coef).cpu().numpy(),
            scores.values.cpu().numpy(),
            rewards,
            terminated,
            truncated,
        )
        returns += rewards
        lengths += 1
        won = infos.get("final_info", {}).get("won")  # games that say (ALFWorld); ended ones
        for i in np.flatnonzero(ended):
            stats.episode_returns.append(float(returns[i]))
            stats.episode_lengths.append(int(lengths[i]))
            stats.episode_successes.append(succeeded(returns[i], None if won is None else won[i]))
        returns[ended], lengths[ended] = 0.0, 0
        stats.format_errors += int(this_step(infos, "format_error", ended).sum())
        if "thought_check" in infos or "thought_check" in infos.get("final_info", {}):
            stats.thought_checks.extend(this_step(infos, "thought_check", ended))
        stats.steps += envs.num_envs
        stats.reply_tokens += int(scores.reply_mask.sum())
        stats.thought_logprob += float(scores.thought_logprob.sum())
        stats.action_logprob += float(scores.action_logprob.sum())
        prompts = next_prompts
    stats.seconds = time.perf_counter() - start
    return stats


def this_step(infos: dict[str, Any], key: str, ended: np.ndarray) -> np.ndarray:
    """Every environment's ``info[key]`` from the step just taken.

    Under same-step autoreset an environment whose episode ended already reports its next
    episode's reset info, and the step's own info sits in ``final_info``; when every episode
    ended on that step, it is only there.
    """
    final = infos.get("final_info", {})
    if key not in infos:
        return np.asarray(final[key])
    if key not in final:
        return np.asarray(infos[key])
    return np.where(ended, final[key], infos[key])
