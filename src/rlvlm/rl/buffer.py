"""The rollout buffer: one update's transitions, their advantages, and minibatches of them.

A fixed cycle, as in Stable-Baselines3: ``add`` one step of every environment at a time,
``compute_advantages`` once the rollout is done, then iterate ``minibatches`` (NamedTuples)
for each PPO epoch. Between the first two, the trainer may overwrite ``logprobs``, ``values``
and ``next_values`` with what its own scoring pass computes (see ``PPOTrainer``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

from rlvlm.rl.advantages import gae, group_advantages


class Minibatch(NamedTuple):
    index: np.ndarray  # its transitions' places in ``transitions()``: step * num_envs + env
    old_logprobs: torch.Tensor  # (B,) lambda * thought + action, at rollout time
    old_values: torch.Tensor  # (B,)
    advantages: torch.Tensor  # (B,)
    returns: torch.Tensor  # (B,)
    reference_logprobs: torch.Tensor  # (B,) at the starting weights (KL penalty); else 0


class RolloutBuffer:
    """``steps`` steps of ``num_envs`` environments. Arrays are (steps, num_envs)."""

    def __init__(self, steps: int, num_envs: int):
        self.steps, self.num_envs = steps, num_envs
        shape = (steps, num_envs)
        self.rewards = np.zeros(shape, np.float32)
        self.values = np.zeros(shape, np.float32)
        self.next_values = np.zeros(shape, np.float32)
        self.logprobs = np.zeros(shape, np.float32)
        self.reference_logprobs = np.zeros(shape, np.float32)  # filled for the KL penalty
        self.terminated = np.zeros(shape, bool)
        self.truncated = np.zeros(shape, bool)
        self.images: list[list[np.ndarray]] = []
        self.prompts: list[list[str]] = []
        self.reply_ids: list[list[list[int]]] = []
        #: (step, env) -> (image, prompt) of the last observation of each truncated episode,
        #: whose value ``next_values`` needs; filled by the rollout, valued by the trainer.
        self.final_observations: dict[tuple[int, int], tuple[np.ndarray, str]] = {}
        self.advantages: np.ndarray | None = None
        self.returns: np.ndarray | None = None

    @property
    def full(self) -> bool:
        return len(self.images) == self.steps

    def add(
        self, images, prompts, reply_ids, logprobs, values, rewards, terminated, truncated
    ) -> None:
        """One step of every environment. ``next_values`` (see ``gae``) are filled once the
        rollout is done: from ``final_observations`` and by ``fill_next_values``."""
        if self.full:
            raise RuntimeError(f"the buffer already holds {self.steps} steps")
        t = len(self.images)
        self.images.append(list(images))
        self.prompts.append(list(prompts))
        self.reply_ids.append([list(reply) for reply in reply_ids])
        self.logprobs[t], self.values[t], self.rewards[t] = logprobs, values, rewards
        self.terminated[t], self.truncated[t] = terminated, truncated

    def compute_advantages(self, gamma: float, gae_lambda: float) -> None:
        if not self.full:
            raise RuntimeError(f"the buffer holds {len(self.images)} of {self.steps} steps")
        self.advantages, self.returns = gae(
            self.rewards,
            self.values,
            self.next_values,
            self.terminated,
            self.truncated,
            gamma,
            gae_lambda,
        )

    def compute_group_advantages(
        self, group_size: int, *, step_level: bool, gamma: float, step_weight: float, scale: bool
    ) -> None:
        """GRPO's advantages, or GiGPO's with ``step_level`` (see ``group_advantages``). There
        is no critic to regress: the returns are left at 0."""
        if not self.full:
            raise RuntimeError(f"the buffer holds {len(self.images)} of {self.steps} steps")
        self.advantages = group_advantages(
            self.rewards,
            self.terminated,
            self.truncated,
            group_size,
            states=self.observation_keys() if step_level else None,
            gamma=gamma,
            step_weight=step_weight,
            scale=scale,
        )
        self.returns = np.zeros_like(self.advantages)

    def observation_keys(self) -> np.ndarray:
        """(steps, num_envs): a digest of each step's observation, picture and prompt, equal
        exactly where the observations are."""
        keys = np.empty((self.steps, self.num_envs), object)
        for t, (images, prompts) in enumerate(zip(self.images, self.prompts, strict=True)):
            for env, (image, prompt) in enumerate(zip(images, prompts, strict=True)):
                digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16)
                digest.update(prompt.encode())
                keys[t, env] = digest.digest()
        return keys

    def fill_next_values(self) -> None:
        """A step that neither ended nor was cut continues into the next step's state."""
        running = ~(self.terminated[:-1] | self.truncated[:-1])
        self.next_values[:-1] = np.where(running, self.values[1:], self.next_values[:-1])

    def transitions(self) -> tuple[list[np.ndarray], list[str], list[list[int]]]:
        """Images, prompts and replies of every transition, step by step: transition
        ``step * num_envs + env`` is at that place, the index ``minibatches`` gives."""
        return (
            [image for step in self.images for image in step],
            [prompt for step in self.prompts for prompt in step],
            [reply for step in self.reply_ids for reply in step],
        )

    def minibatches(self, size: int, order: np.ndarray) -> Iterator[Minibatch]:
        """Every transition once, in ``order`` (a permutation of ``range(steps * num_envs)``),
        in minibatches of ``size`` (the last may be smaller). Advantages come as stored
        (normalise them before, over the whole buffer)."""
        if self.advantages is None or self.returns is None:
            raise RuntimeError("call compute_advantages() first")
        for start in range(0, len(order), size):
            index = order[start : start + size]

            def pick(array, index=index):
                return torch.as_tensor(array.reshape(-1)[index])

            yield Minibatch(
                index,
                pick(self.logprobs),
                pick(self.values),
                pick(self.advantages),
                pick(self.returns),
                pick(self.reference_logprobs),
            )
