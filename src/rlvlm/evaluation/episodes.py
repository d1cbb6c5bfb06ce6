"""Playing whole episodes with a policy, many environments at a time."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from rlvlm.evaluation.protocol import Policy, Turn
from rlvlm.games import make
from rlvlm.games.base import succeeded
from rlvlm.games.wrappers import TextActions
from rlvlm.progress import progress_bar
from rlvlm.seeds import eval_seeds


@dataclass(frozen=True)
class Step:
    """One recorded turn: what the policy saw, what it wrote, and what came of it."""

    image: np.ndarray
    prompt: str
    reply: str
    action: int | None  # the action taken; None for a no-op after an unparsable reply
    action_name: str | None
    parse_reason: str
    format_error: bool
    invalid_action: bool
    reward: float
    terminated: bool
    truncated: bool


@dataclass(frozen=True)
class Episode:
    seed: int
    episode_return: float
    length: int
    format_errors: int
    invalid_actions: int
    task_type: str | None = None
    #: Whether the task was done, for games that say so (ALFWorld, whose shaped rewards make
    #: a lost episode's return positive); None for the others.
    won: bool | None = None
    #: Per reply, whether it stated each fact of the picture truly (``TextActions``'
    #: ``thought_check``); empty without CoT or for games whose thoughts state no facts.
    thought_checks: tuple[tuple[tuple[str, bool], ...], ...] = ()
    #: Recorded turns (``run_episodes(record=...)``) and the picture after the last one.
    #: Not part of equality: two runs of the same deals are equal with or without them.
    steps: tuple[Step, ...] = field(default=(), compare=False, repr=False)
    final_image: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def success(self) -> bool:
        """Won, where the game says; otherwise a return above 0 (the paper's definition)."""
        return succeeded(self.episode_return, self.won)


@dataclass
class _Running:
    env: TextActions
    index: int
    seed: int
    observation: Any
    info: dict[str, Any]
    episode_return: float = 0.0
    length: int = 0
    invalid_actions: int = 0
    thought_checks: list[tuple[tuple[str, bool], ...]] = field(default_factory=list)
    steps: list[Step] | None = None  # None: not recorded


def run_episodes(
    game: str,
    policy: Policy,
    episodes: int,
    seed: int = 0,
    *,
    batch_size: int = 16,
    on_invalid: Literal["random", "noop"] = "random",
    cot: bool = True,
    history: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    record: int = 0,
    seeds: Sequence[int] | None = None,
    on_episode: Callable[[Episode], None] | None = None,
) -> list[Episode]:
    """Play ``episodes`` held-out episodes, asking the policy for a batch of replies per step.

    Results come back in seed order, whatever order the episodes finished in. The first
    ``record`` episodes keep every turn (picture, prompt, reply, action, reward) in
    ``Episode.steps``, for replays and demonstrations. ``seeds``: the reset seeds to play
    instead of the held-out ones (demonstrations play training deals). ``on_episode`` is
    called with each episode as it ends (a caller's own progress).
    """
    if seeds is None:
        seeds = eval_seeds(episodes, seed)
    elif len(seeds) != episodes:
        raise ValueError(f"{len(seeds)} seeds for {episodes} episodes")
    queue = deque(enumerate(seeds))
    results: list[Episode | None] = [None] * episodes
    running: list[_Running] = []

    def start(env: TextActions) -> None:
        index, episode_seed = queue.popleft()
        observation, info = env.reset(seed=episode_seed)
        steps = [] if index < record else None
        running.append(_Running(env, index, episode_seed, observation, info, steps=steps))

    for _ in range(min(batch_size, episodes)):
        start(TextActions(make(game, **(env_kwargs or {})), on_invalid, cot=cot, history=history))

    finished = wins = 0
    with progress_bar(
        total=episodes, desc=f"{game} {policy.name}", enabled=progress, unit="episode"
    ) as bar:
        while running:
            batch, running = running, []
            turns = [
                Turn(r.observation, r.info["prompt"], r.env.game.task, r.env.game.view())
                for r in batch
            ]
            for r, turn, reply in zip(batch, turns, policy.replies(turns), strict=True):
                r.observation, reward, terminated, truncated, r.info = r.env.step(reply)
                r.episode_return += float(reward)
                r.length += 1
                r.invalid_actions += bool(r.info["invalid_action"])
                if r.info.get("thought_check"):
                    r.thought_checks.append(r.info["thought_check"])
                if r.steps is not None:
                    r.steps.append(_step(turn, reply, float(reward), terminated, truncated, r.info))
                if not (terminated or truncated):
                    running.append(r)
                    continue
                results[r.index] = Episode(
                    r.seed,
                    r.episode_return,
                    r.length,
                    r.info["format_errors"],
                    r.invalid_actions,
                    r.info.get("task_type"),
                    r.info.get("won"),
                    tuple(r.thought_checks),
                    steps=tuple(r.steps or ()),
                    final_image=None if r.steps is None else np.array(r.observation),
                )
                finished, wins = finished + 1, wins + results[r.index].success
                bar.set_postfix(success=f"{wins / finished:.1%}", refresh=False)
                bar.update()
                if on_episode is not None:
                    on_episode(results[r.index])
                if queue:
                    start(r.env)
    return [episode for episode in results if episode is not None]


def _step(
    turn: Turn, reply: str, reward: float, terminated: bool, truncated: bool, info: dict[str, Any]
) -> Step:
    action = info["action"]
    return Step(
        image=np.array(turn.image),  # a copy: envs may reuse their picture buffers
        prompt=turn.prompt,
        reply=reply,
        action=action,
        action_name=None if action is None else turn.task.actions(turn.view)[action],
        parse_reason=info["parse_reason"],
        format_error=bool(info["format_error"]),
        invalid_action=bool(info["invalid_action"]),
        reward=reward,
        terminated=bool(terminated),
        truncated=bool(truncated),
    )
