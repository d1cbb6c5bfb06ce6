"""Policies that play from text: each turn they get the picture and prompt, and reply."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rlvlm.config import TINY_PRESETS, looks_like_hub_id
from rlvlm.evaluation.protocol import Policy, Turn
from rlvlm.games.base import Task

if TYPE_CHECKING:
    from rlvlm.evaluation.api import ApiSettings
    from rlvlm.models import VLMPolicy


class OraclePolicy:
    """The game's expert, replying with its chain of thought (``cot``) as a model would.

    With ``epsilon``, each action is instead, with that probability, a uniformly random legal
    one drawn from ``rng`` (which it draws from at every turn), and the reply is truthful
    about it: the demonstrations' exploration."""

    name = "oracle"
    image_size = None

    def __init__(
        self, epsilon: float = 0.0, rng: np.random.Generator | None = None, cot: bool = True
    ):
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be a probability from 0 to 1, got {epsilon}")
        self.epsilon, self.cot = epsilon, cot
        self.rng = rng or np.random.default_rng(0)

    def replies(self, turns: Sequence[Turn]) -> list[str]:
        return [self._reply(turn.task, turn.view) for turn in turns]

    def _reply(self, task: Task, view: Hashable) -> str:
        action = task.oracle_action(view)
        if self.epsilon and self.rng.random() < self.epsilon:
            action = int(self.rng.choice(task.legal_actions(view)))
        return task.reply(view, action, cot=self.cot)


class RandomPolicy:
    """Uniformly random actions out of the whole action space (the admissible commands, in a
    game whose actions change with its state), in well-formed replies."""

    name = "random"
    image_size = None

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def replies(self, turns: Sequence[Turn]) -> list[str]:
        return [
            turn.task.reply(turn.view, int(self.rng.integers(len(turn.task.actions(turn.view)))))
            for turn in turns
        ]


class ModelPolicy:
    """A VLM that reads the picture and the prompt and writes its reply."""

    def __init__(
        self, model: VLMPolicy, name: str, temperature: float = 0.2, max_new_tokens: int = 256
    ):
        self.model, self.name = model, name
        self.temperature, self.max_new_tokens = temperature, max_new_tokens
        self.image_size = model.image_size
        self.prompt = model.prompt  # how it was trained to be asked, if it was

    def replies(self, turns: Sequence[Turn]) -> list[str]:
        images, prompts = [turn.image for turn in turns], [turn.prompt for turn in turns]
        return self.model.generate(
            images, prompts, max_new_tokens=self.max_new_tokens, temperature=self.temperature
        ).texts


BUILT_IN = ("oracle", "random")
API_PREFIX = "api:"


def check_policy(spec: str) -> None:
    """A ValueError, before anything loads, if ``spec`` can name no policy."""
    known = spec in BUILT_IN or spec in TINY_PRESETS or spec.startswith(API_PREFIX)
    if not known and not Path(spec).exists() and not looks_like_hub_id(spec):
        choices = ", ".join([*BUILT_IN, *TINY_PRESETS])
        raise ValueError(
            f"unknown policy {spec!r}; choose from {choices}, a checkpoint "
            f"directory, a hub id or {API_PREFIX}<model>"
        )


def make_policy(
    spec: str,
    seed: int = 0,
    *,
    temperature: float = 0.2,
    max_new_tokens: int = 256,
    device: str = "cpu",
    api: ApiSettings | None = None,
) -> Policy:
    """The policy named by ``spec``: ``oracle``, ``random``, a model preset such as
    ``tiny-llava``, a checkpoint directory, or ``api:<model>`` (an OpenAI-compatible
    endpoint, by ``api`` or the environment's ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``)."""
    if spec == "oracle":
        return OraclePolicy()
    if spec == "random":
        return RandomPolicy(seed)
    if spec.startswith(API_PREFIX):
        from rlvlm.evaluation.api import ApiPolicy

        return ApiPolicy(
            spec.removeprefix(API_PREFIX), api, temperature=temperature, max_tokens=max_new_tokens
        )
    check_policy(spec)
    from rlvlm.models import load_policy  # torch and transformers: only for a model

    model = load_policy(spec, device=device, seed=seed)
    return ModelPolicy(model.eval(), spec, temperature, max_new_tokens)
