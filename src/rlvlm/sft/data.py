"""Demonstrations for supervised fine-tuning: each game's expert, played and written down.

A demonstration directory holds ``data.jsonl``, one line per step in the LLaVA conversation
format that most VLM fine-tuning tools read::

    {"id": "numberline-000000-00", "image": "images/numberline-000000-00.png",
     "conversations": [{"from": "human", "value": "<image>\\n<prompt>"},
                       {"from": "gpt", "value": "<reply>"}]}

beside the pictures under ``images/`` and ``meta.json``, which says how the data was made.
Every reply is truthful for the action actually taken, so exploratory (epsilon) steps teach
the reply format without teaching the model to say one thing and do another.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from PIL import Image

from rlvlm.evaluation.episodes import run_episodes
from rlvlm.evaluation.policies import OraclePolicy
from rlvlm.games import get_game
from rlvlm.io import open_atomic, write_json
from rlvlm.progress import progress_bar
from rlvlm.seeds import demonstration_seeds

if TYPE_CHECKING:
    from rlvlm.config import TrainConfig

DATA_FILE = "data.jsonl"
META_FILE = "meta.json"
IMAGE_DIR = "images"
IMAGE_TOKEN = "<image>"
#: Demonstration episodes played before their pictures are written out.
_EPISODES_IN_MEMORY = 64


class Demonstration(NamedTuple):
    """One step of a demonstration: the picture and prompt the model sees, and its answer."""

    id: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    prompt: str
    reply: str


class DemonstrationSummary(NamedTuple):
    path: Path  # the data.jsonl written
    episodes: int
    steps: int
    success_rate: float  # of the recorded episodes, exploration included


def write_demonstrations(
    game: str,
    episodes: int,
    out: str | os.PathLike[str],
    *,
    epsilon: float = 0.0,
    seed: int = 0,
    image_size: int | None = None,
    cot: bool = True,
    history: int = 0,
    progress: bool = False,
) -> DemonstrationSummary:
    """Play ``episodes`` episodes with the game's expert and write every step to ``out``.

    With probability ``epsilon`` a step's action is instead a uniformly random legal one
    (from a generator of its own, seeded from ``seed``), so the data also shows states the
    expert never reaches. ``image_size`` defaults to the env's own (300); pass the model's.
    An existing ``data.jsonl`` in ``out`` is replaced, and removed first, so an interrupted
    run leaves no file that points at pictures this run has overwritten.
    """
    get_game(game)  # an unknown game fails here, naming the valid ones
    seeds = demonstration_seeds(episodes, seed)
    # One episode at a time, so that the exploration draws come in the order of the steps.
    expert = OraclePolicy(epsilon, np.random.default_rng([seed, 1]), cot=cot)
    env_kwargs = {} if image_size is None else {"image_size": image_size}

    out = Path(out)
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    for stale in (out / DATA_FILE, out / META_FILE):
        stale.unlink(missing_ok=True)
    steps = successes = 0
    with (
        open_atomic(out / DATA_FILE) as data,
        progress_bar(
            total=episodes, desc=f"{game} demonstrations", unit="episode", enabled=progress
        ) as bar,
    ):
        for first in range(0, episodes, _EPISODES_IN_MEMORY):
            chunk = seeds[first : first + _EPISODES_IN_MEMORY]
            played = run_episodes(
                game,
                expert,
                len(chunk),
                seeds=chunk,
                batch_size=1,
                cot=cot,
                history=history,
                env_kwargs=env_kwargs,
                record=len(chunk),
                on_episode=lambda _: bar.update(),  # a line per minute, not per chunk
            )
            for episode_number, episode in enumerate(played, first):
                for step_number, step in enumerate(episode.steps):
                    name = f"{game}-{episode_number:06d}-{step_number:02d}"
                    image = f"{IMAGE_DIR}/{name}.png"
                    Image.fromarray(step.image).save(out / image)
                    record = {
                        "id": name,
                        "image": image,
                        "conversations": [
                            {"from": "human", "value": f"{IMAGE_TOKEN}\n{step.prompt}"},
                            {"from": "gpt", "value": step.reply},
                        ],
                    }
                    data.write(json.dumps(record, ensure_ascii=False) + "\n")
                steps += len(episode.steps)
                successes += episode.success
    size = played[0].steps[0].image.shape[0]  # the pictures', given or the game's own

    summary = DemonstrationSummary(out / DATA_FILE, episodes, steps, successes / episodes)
    write_json(
        out / META_FILE,
        {
            "game": game,
            "episodes": episodes,
            "steps": steps,
            "epsilon": epsilon,
            "seed": seed,
            "image_size": size,
            "cot": cot,
            "history": history,
            "expert_success_rate": summary.success_rate,
        },
    )
    return summary


def check_written_for(path: str | os.PathLike[str], config: TrainConfig) -> None:
    """Raise a ValueError when ``rlvlm data`` wrote the demonstrations at ``path`` for another
    game or prompt (``config.prompt``) than the run's: SFT would then teach replies to prompts
    the run never shows. Data without ``meta.json`` (other tools') is taken as it is."""
    path = Path(path)
    meta_file = (path.parent if path.is_file() else path) / META_FILE
    if not meta_file.is_file():
        return
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{meta_file}: {error}") from None
    # What the run has, by its settings' names, beside what the data was made with (data
    # from before a setting was recorded was made with that setting's default).
    run = {"game": config.game, "ppo.cot": config.ppo.cot, "env.history": config.env.history}
    made = {
        "game": meta.get("game", config.game),
        "ppo.cot": meta.get("cot", True),
        "env.history": meta.get("history", 0),
    }
    if differ := [key for key in run if made[key] != run[key]]:
        raise ValueError(
            f"{path} was made with "
            + ", ".join(f"{key}={made[key]} where the run has {run[key]}" for key in differ)
            + ": write it again with `rlvlm data` or set the run's to match"
        )


def load_demonstrations(
    path: str | os.PathLike[str], limit: int | None = None
) -> list[Demonstration]:
    """The demonstrations in a directory's ``data.jsonl`` (or that file itself), in order.

    Reads the LLaVA conversation format, whoever wrote it: one human turn then one gpt turn,
    image paths relative to the directory. Every picture is loaded into memory; ``limit``
    keeps only the first ones. Any problem is a ValueError naming the file and line.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be 0 or more, got {limit}")
    path = Path(path)
    data_file = path if path.is_file() else path / DATA_FILE
    if not data_file.is_file():
        raise ValueError(f"no demonstrations at {path}: {DATA_FILE} not found (see `rlvlm data`)")
    demonstrations: list[Demonstration] = []
    with data_file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if limit is not None and len(demonstrations) >= limit:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                demonstrations.append(_demonstration(record, data_file.parent, number))
            except ValueError as error:  # json's decode errors are ValueErrors too
                raise ValueError(f"{data_file} line {number}: {error}") from None
    if not demonstrations and limit != 0:
        raise ValueError(f"no demonstrations in {data_file}: it is empty (see `rlvlm data`)")
    return demonstrations


def _demonstration(record: Any, directory: Path, number: int) -> Demonstration:
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    image = record.get("image")
    if not isinstance(image, str):
        raise ValueError('expected an "image" path')
    turns = record.get("conversations")
    if not (isinstance(turns, list) and all(isinstance(t, dict) for t in turns)):
        raise ValueError('expected "conversations", a list of {"from": ..., "value": ...}')
    roles = [t.get("from") for t in turns]
    if roles != ["human", "gpt"] or not all(isinstance(t.get("value"), str) for t in turns):
        raise ValueError(f"expected one human turn then one gpt turn, got roles {roles}")
    image_path = directory / image
    if not image_path.is_file():
        raise ValueError(f"image {image_path} not found")
    try:
        with Image.open(image_path) as picture:
            pixels = np.array(picture.convert("RGB"), dtype=np.uint8)
    except OSError as error:
        raise ValueError(f"cannot read image {image_path}: {error}") from None
    prompt = without_image_token(turns[0]["value"])
    return Demonstration(str(record.get("id", f"line-{number}")), pixels, prompt, turns[1]["value"])


def without_image_token(text: str) -> str:
    """The prompt without LLaVA's ``<image>`` placeholder, which other tools put first or last.

    >>> without_image_token("<image>\\nHow far?")
    'How far?'
    >>> without_image_token("<image>How far?")
    'How far?'
    >>> without_image_token("How far?\\n<image>")
    'How far?'
    """
    if text.startswith(IMAGE_TOKEN):
        return text[len(IMAGE_TOKEN) :].removeprefix("\n")
    if text.endswith(IMAGE_TOKEN):
        return text[: -len(IMAGE_TOKEN)].removesuffix("\n")
    return text
