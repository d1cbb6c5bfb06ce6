"""The paper's non-language baseline (Table 2, "CNN + RL"): PPO on the raw picture with a
small CNN, through Stable-Baselines3, on the same gymnasium envs and held-out deals.

The paper puts a frozen CLIP encoder and an MLP under PPO; a Nature-DQN CNN trained from
scratch (SB3's ``CnnPolicy``) is the laptop-sized equivalent. It plays the game's actions
directly, so it has no reply format to learn and no thoughts; its held-out episodes go
through the same text loop as every other player (action-only replies), which gives the same
evaluation JSON on the same deals.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlvlm.config import load_config
from rlvlm.evaluation.episodes import run_episodes
from rlvlm.evaluation.metrics import summarize
from rlvlm.evaluation.protocol import Turn
from rlvlm.games import CARD_GAMES, make
from rlvlm.io import open_atomic, write_json
from rlvlm.seeds import EVAL_SEED_BASE

#: The picture side SB3's Nature CNN was designed for.
IMAGE_SIZE = 84
RESULT_FILE = "eval.json"
CURVE_FILE = "metrics.jsonl"
MODEL_FILE = "model.zip"


@dataclass(frozen=True)
class CnnSettings:
    """One CNN + RL run. ``steps`` None: the environment steps of the game's tiny config's PPO
    stage (updates x envs x steps per env), the VLM's budget."""

    game: str
    seed: int = 0
    steps: int | None = None
    num_envs: int = 8
    n_steps: int = 128  # per env and rollout
    batch_size: int = 256
    epochs: int = 4
    lr: float = 2.5e-4
    ent_coef: float = 0.01
    clip_coef: float = 0.1
    evaluations: int = 8  # held-out evaluations spread over the budget, the last at its end
    eval_episodes: int | None = None  # None: the tiny config's (200; Blackjack 1,000)
    eval_seed: int = 0

    def __post_init__(self):
        if self.game not in CARD_GAMES:
            raise ValueError(f"the CNN baseline plays {', '.join(CARD_GAMES)}, not {self.game!r}")
        for key in ("num_envs", "n_steps", "batch_size", "epochs", "evaluations"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be 1 or more, got {getattr(self, key)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be 1 or more, got {self.steps}")

    def resolved(self) -> CnnSettings:
        """These settings with the tiny config's budget and evaluation size filled in."""
        tiny = load_config(f"tiny/{self.game}")
        ppo = tiny.ppo
        steps = self.steps or ppo.updates * ppo.num_envs * ppo.steps_per_env
        episodes = self.eval_episodes or tiny.eval.episodes
        return CnnSettings(**asdict(self) | {"steps": steps, "eval_episodes": episodes})


class CnnPlayer:
    """A trained SB3 model as a ``Policy``: its most likely action, as an action-only reply."""

    image_size = IMAGE_SIZE

    def __init__(self, model: Any, name: str = "cnn"):
        self.model, self.name = model, name

    def replies(self, turns: Sequence[Turn]) -> list[str]:
        images = np.stack([turn.image for turn in turns])
        actions, _ = self.model.predict(images, deterministic=True)
        return [
            turn.task.reply(turn.view, int(action), cot=False)
            for turn, action in zip(turns, actions, strict=True)
        ]


def evaluate_cnn(model: Any, settings: CnnSettings, progress: bool = False) -> dict[str, Any]:
    """The held-out evaluation: the tiny config's deals, as every VLM run plays them."""
    played = run_episodes(
        settings.game,
        CnnPlayer(model),
        settings.eval_episodes,
        settings.eval_seed,
        cot=False,
        env_kwargs={"image_size": IMAGE_SIZE},
        progress=progress,
    )
    return summarize(played, settings.game, "cnn")


def train_cnn(
    settings: CnnSettings, out: Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Train, evaluating on the held-out deals along the way; write ``metrics.jsonl`` (one
    line per evaluation), ``eval.json`` (the last, with the peak and where it came) and the
    model into ``out``. A finished run (its ``eval.json`` there) is read back, not redone."""
    if (out / RESULT_FILE).is_file():
        return json.loads((out / RESULT_FILE).read_text())
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.env_util import make_vec_env
    except ImportError:
        raise ImportError(
            "the CNN baseline needs Stable-Baselines3: pip install 'rlvlm[baselines]'"
        ) from None
    settings = settings.resolved()
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "settings.json", asdict(settings))
    # Training deals come from one seed below the held-out range, drawn per run seed.
    env_seed = int(np.random.default_rng([settings.seed, 7]).integers(0, EVAL_SEED_BASE // 2))
    envs = make_vec_env(
        lambda: make(settings.game, image_size=IMAGE_SIZE),
        n_envs=settings.num_envs,
        seed=env_seed,
    )
    model = PPO(
        "CnnPolicy",
        envs,
        n_steps=settings.n_steps,
        batch_size=settings.batch_size,
        n_epochs=settings.epochs,
        learning_rate=settings.lr,
        ent_coef=settings.ent_coef,
        clip_range=settings.clip_coef,
        seed=settings.seed,
        device="cpu",
        verbose=0,
    )
    # Held-out evaluations at rollout starts (the policy after an update) once a mark has
    # passed, and after the last update.
    marks = [settings.steps * (i + 1) // settings.evaluations for i in range(settings.evaluations)]
    curve: list[dict[str, Any]] = []
    started = time.perf_counter()

    def evaluate(steps: int) -> dict[str, Any]:
        result = evaluate_cnn(model, settings)
        curve.append(
            {
                "global_step": steps,
                "time": round(time.perf_counter() - started, 1),
                **{f"eval/{k}": v for k, v in result.items() if isinstance(v, float | int)},
            }
        )
        with open_atomic(out / CURVE_FILE) as file:
            file.writelines(json.dumps(point) + "\n" for point in curve)
        log(
            f"cnn {settings.game} seed {settings.seed}: {steps} environment steps, "
            f"held-out success {result['success_rate']:.1%}"
        )
        return result

    class Evaluations(BaseCallback):
        def _on_rollout_start(self) -> None:
            if marks and self.num_timesteps >= marks[0]:
                while marks and self.num_timesteps >= marks[0]:
                    marks.pop(0)
                evaluate(self.num_timesteps)

        def _on_step(self) -> bool:
            return True

    model.learn(total_timesteps=settings.steps, callback=Evaluations())
    envs.close()
    final = evaluate(model.num_timesteps)
    peak = max(curve, key=lambda point: point["eval/success_rate"])
    model.save(out / MODEL_FILE)
    final |= {
        "env_steps": model.num_timesteps,
        "peak_success_rate": peak["eval/success_rate"],
        "peak_step": peak["global_step"],
        "train_seconds": round(time.perf_counter() - started, 1),
        "settings": asdict(settings),
    }
    write_json(out / RESULT_FILE, final)
    return final
