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
from rlvlm.layout import EVAL_FILE, METRICS_FILE
from rlvlm.seeds import train_seeds

#: The picture side SB3's Nature CNN was designed for.
IMAGE_SIZE = 84
MODEL_FILE = "model.zip"


#: The least value of each integer setting.
_LEAST = {"seed": 0, "eval_seed": 0} | dict.fromkeys(
    ("steps", "num_envs", "n_steps", "batch_size", "epochs", "eval_every", "eval_episodes"), 1
)


@dataclass(frozen=True)
class CnnSettings:
    """One CNN + RL run. What is None comes from the game's tiny config, so that the CNN
    trains as the VLM's PPO stage does: its environments, rollout length and environment-step
    budget (updates x envs x steps per env), evaluated as often on as many held-out deals."""

    game: str
    seed: int = 0
    steps: int | None = None
    num_envs: int | None = None
    n_steps: int | None = None  # per env and rollout
    batch_size: int = 64
    epochs: int = 4
    lr: float = 2.5e-4
    ent_coef: float = 0.01
    clip_coef: float = 0.1
    eval_every: int | None = None  # rollouts (updates) between held-out evaluations
    eval_episodes: int | None = None
    eval_seed: int | None = None

    def __post_init__(self):
        if self.game not in CARD_GAMES:
            raise ValueError(f"the CNN baseline plays {', '.join(CARD_GAMES)}, not {self.game!r}")
        for key, least in _LEAST.items():
            value = getattr(self, key)
            if value is not None and value < least:
                raise ValueError(f"{key} must be {least} or more, got {value}")

    @property
    def rollout(self) -> int:
        return self.num_envs * self.n_steps

    def resolved(self) -> CnnSettings:
        """These settings with the tiny config's filled in; a budget that is not a whole number
        of rollouts is refused (SB3 would run the last one to its end)."""
        tiny = load_config(f"tiny/{self.game}")
        ppo, evaluation = tiny.ppo, tiny.eval
        given = {key: value for key, value in asdict(self).items() if value is not None}
        defaults = {
            "steps": ppo.updates * ppo.num_envs * ppo.steps_per_env,
            "num_envs": ppo.num_envs,
            "n_steps": ppo.steps_per_env,
            "eval_every": evaluation.every or ppo.updates,
            "eval_episodes": evaluation.episodes,
            "eval_seed": evaluation.seed,
        }
        settings = CnnSettings(**defaults | given)
        if settings.steps % settings.rollout:
            raise ValueError(
                f"steps ({settings.steps}) must be a multiple of a rollout's "
                f"{settings.num_envs} envs x {settings.n_steps} steps ({settings.rollout})"
            )
        return settings


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


def evaluate_cnn(model: Any, settings: CnnSettings) -> dict[str, Any]:
    """The held-out evaluation: the tiny config's deals, as every VLM run plays them."""
    played = run_episodes(
        settings.game,
        CnnPlayer(model),
        settings.eval_episodes,
        settings.eval_seed,
        cot=False,
        env_kwargs={"image_size": IMAGE_SIZE},
    )
    return summarize(played, settings.game, "cnn")


def train_cnn(
    settings: CnnSettings, out: Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Train, evaluating on the held-out deals along the way; write ``metrics.jsonl`` (one
    line per evaluation), ``eval.json`` (the last, with the peak and where it came) and the
    model into ``out``. A finished run (its ``eval.json`` there) is read back, not redone."""
    settings = settings.resolved()
    if (out / EVAL_FILE).is_file():
        done = json.loads((out / EVAL_FILE).read_text())
        if done["settings"] != asdict(settings):
            raise ValueError(f"{out} holds a finished run with other settings; give another --out")
        return done
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.logger import Logger
    except ImportError:
        raise ImportError(
            "the CNN baseline needs Stable-Baselines3: pip install 'rlvlm[baselines]'"
        ) from None
    out.mkdir(parents=True, exist_ok=True)
    envs = make_vec_env(lambda: make(settings.game, image_size=IMAGE_SIZE), settings.num_envs)
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
    # A logger with no outputs: SB3's default one makes an empty SB3-<time> folder in the
    # temporary directory on every run.
    model.set_logger(Logger(folder=None, output_formats=[]))
    # The environments' first reset seeds, after PPO's own seeding set them to seed + i:
    # a block below the held-out range, drawn from the run's seed as the VLM's are.
    envs.seed(train_seeds(settings.seed, 0, 0, settings.num_envs, settings.num_envs)[0])
    # Held-out evaluations every ``eval_every`` updates (at the next rollout's start, the
    # policy just updated) and after the last.
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
        with open_atomic(out / METRICS_FILE) as file:
            file.writelines(json.dumps(point) + "\n" for point in curve)
        log(
            f"cnn {settings.game} seed {settings.seed}: {steps} environment steps, "
            f"held-out success {result['success_rate']:.1%}"
        )
        return result

    class Evaluations(BaseCallback):
        def _on_rollout_start(self) -> None:
            updates = self.num_timesteps // settings.rollout
            if updates and updates % settings.eval_every == 0:
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
    write_json(out / EVAL_FILE, final)
    return final
