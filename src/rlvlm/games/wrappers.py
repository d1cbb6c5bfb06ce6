"""Playing a game by text: the agent's reply is the action."""

from __future__ import annotations

import string
from collections import deque
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlvlm.games.base import GameEnv, with_history

#: What the history says was done after a reply that named no action (a no-op).
NO_ACTION = "(no action: the reply named none)"


class TextActions(gym.Wrapper):
    """Take a model's reply as the action, parse it with the game's task, and step.

    A reply that names no action (a *format error*) is handled by ``on_invalid``:

    - ``"random"``: a uniformly random legal action is taken, as in Zhai et al. (2024);
    - ``"noop"``: the state stays as it is and the reward is ``-penalty``.

    Either way ``info`` says ``format_error`` (this step), ``format_errors`` (this episode),
    ``parse_reason`` and ``action`` (the action taken, None for a no-op). With CoT prompts
    it also says ``thought_check``: whether the reply stated each fact of the picture truly,
    as ``(fact, true)`` pairs (a tuple, which vector envs keep whole). Every ``info``
    also carries ``prompt``, the text to show the agent beside the image; with ``history``
    K, the prompt recalls the episode's last K steps (each action taken, after the text of
    what was observed there, ``Task.feedback``, for a game that has one). An episode lasts
    at most the game's ``max_steps`` steps, no-ops included.
    """

    def __init__(
        self,
        env: gym.Env,
        on_invalid: Literal["random", "noop"] = "random",
        penalty: float = 1.0,
        cot: bool = True,
        history: int = 0,
    ):
        super().__init__(env)
        if on_invalid not in ("random", "noop"):
            raise ValueError(f"on_invalid must be 'random' or 'noop', got {on_invalid!r}")
        if history < 0:
            raise ValueError(f"history must be 0 or more steps, got {history}")
        game = env.unwrapped
        if not isinstance(game, GameEnv):
            raise TypeError(f"TextActions needs an rlvlm game, got {type(game).__name__}")
        self.game = game
        self.on_invalid, self.penalty, self.cot = on_invalid, float(penalty), cot
        self.action_space = spaces.Text(max_length=1 << 20, charset=string.printable)
        self._fallback_rng = np.random.default_rng()
        self._last_info: dict[str, Any] | None = None
        self.steps = self.format_errors = 0
        self.history: deque[tuple[str, str]] = deque(maxlen=history)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        observation, info = self.env.reset(seed=seed, options=options)
        if seed is not None:  # replay with the episode, on a stream of its own: the env's
            self._fallback_rng = np.random.default_rng([seed, 1])  # is default_rng(seed)
        self.steps = self.format_errors = 0
        self.history.clear()
        self._last_info = info
        return observation, self._annotate(info)

    def step(self, reply: str):
        if self._last_info is None:
            raise RuntimeError("call reset() before step()")
        task, view = self.game.task, self.game.view()
        parsed = task.parse(reply, view)
        checked = (
            {"thought_check": tuple(task.check_thoughts(reply, view).items())} if self.cot else {}
        )
        action = parsed.action
        if action is None and self.on_invalid == "random":
            action = int(self._fallback_rng.choice(self.game.legal_actions()))
        if action is None:
            observation, reward, terminated, truncated = (
                self.game.observe(),
                -self.penalty,
                False,
                False,
            )
            info = {**self._last_info, "invalid_action": False}
        else:
            observation, reward, terminated, truncated, info = self.env.step(action)
        if self.history.maxlen:
            taken = NO_ACTION if action is None else task.actions(view)[action]
            self.history.append((task.feedback(view), taken))
        self.steps += 1
        self.format_errors += not parsed.valid
        truncated = truncated or (not terminated and self.steps >= self.game.max_steps)
        self._last_info = info
        info = self._annotate(
            info,
            action=action,
            format_error=not parsed.valid,
            parse_reason=parsed.reason,
            **checked,
        )
        return observation, reward, terminated, truncated, info

    def _annotate(self, info: dict[str, Any], **extra: Any) -> dict[str, Any]:
        prompt = with_history(self.game.task.prompt(self.game.view(), cot=self.cot), self.history)
        return {**info, **extra, "format_errors": self.format_errors, "prompt": prompt}
