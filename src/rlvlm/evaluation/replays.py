"""Replays: recorded evaluation episodes saved as pictures and a JSON transcript.

A replay directory holds one PNG per recorded turn (and one of the final state) and
``replays.json``, written last, so a directory without it is an unfinished save::

    replays/final/replays.json
    replays/final/episode-00-step-00.png ...
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rlvlm.evaluation.episodes import Episode
from rlvlm.io import write_atomic, write_json

REPLAYS_FILE = "replays.json"


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_replays(
    episodes: Sequence[Episode], directory: str | Path, *, game: str, policy: str
) -> Path | None:
    """Save the recorded episodes of ``episodes`` to ``directory`` (replacing what it held).

    Returns the path of ``replays.json``, or None when no episode was recorded.
    """
    recorded = [episode for episode in episodes if episode.steps]
    if not recorded:
        return None
    directory = Path(directory)
    shutil.rmtree(directory, ignore_errors=True)
    transcripts = []
    for number, episode in enumerate(recorded):
        steps = []
        for index, step in enumerate(episode.steps):
            image = f"episode-{number:02d}-step-{index:02d}.png"
            write_atomic(directory / image, png_bytes(step.image))
            text = {f.name: getattr(step, f.name) for f in fields(step) if f.name != "image"}
            steps.append({"image": image, **text})
        final_image = None
        if episode.final_image is not None:
            final_image = f"episode-{number:02d}-final.png"
            write_atomic(directory / final_image, png_bytes(episode.final_image))
        transcripts.append(
            {
                "seed": episode.seed,
                "success": episode.success,
                "episode_return": episode.episode_return,
                "length": episode.length,
                "format_errors": episode.format_errors,
                "invalid_actions": episode.invalid_actions,
                "task_type": episode.task_type,
                "final_image": final_image,
                "steps": steps,
            }
        )
    return write_json(
        directory / REPLAYS_FILE, {"game": game, "policy": policy, "episodes": transcripts}
    )


def load_replays(directory: str | Path) -> dict[str, Any] | None:
    """What ``save_replays`` wrote to ``directory``, or None if it holds no finished save."""
    path = Path(directory) / REPLAYS_FILE
    return json.loads(path.read_text()) if path.is_file() else None
