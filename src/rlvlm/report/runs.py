"""What a report reads from a run directory (see ``rlvlm.train`` for the layout)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlvlm.config import flatten
from rlvlm.evaluation.replays import load_replays
from rlvlm.layout import CONFIG_FILE, EVAL_FILE, METRICS_FILE, REPLAYS_DIR, SFT_EVAL_FILE
from rlvlm.rl.metrics import read_metrics

#: Replay stages in the order a run produces them.
STAGES = ("sft", "final")


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    config_text: str
    metrics: list[dict[str, Any]]
    sft_eval: dict[str, Any] | None
    final_eval: dict[str, Any] | None
    replays: dict[str, dict[str, Any]] = field(default_factory=dict)  # by stage

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def game(self) -> str:
        return self.config.get("game", "?")

    @property
    def model(self) -> str:
        return self.config.get("model", {}).get("name", "?")

    @property
    def updates_done(self) -> int:
        return self.metrics[-1]["update"] if self.metrics else 0

    @property
    def updates_planned(self) -> int | None:
        return self.config.get("ppo", {}).get("updates")

    @property
    def steps_per_update(self) -> int:
        """Environment steps of one PPO update (of one process)."""
        ppo = self.config.get("ppo", {})
        return int(ppo.get("num_envs", 0)) * int(ppo.get("steps_per_env", 0))

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """The updates at which ``key`` was logged with a number, and those numbers.

        The SFT evaluation, made on the same held-out episodes, is the ``eval/`` series'
        point at update 0.
        """
        points = [(row["update"], row[key]) for row in self.metrics if row.get(key) is not None]
        before = (self.sft_eval or {}).get(key.removeprefix("eval/"))
        if key.startswith("eval/") and isinstance(before, (int, float)) and points:
            points.insert(0, (0, before))
        return [update for update, _ in points], [value for _, value in points]


def load_run(path: str | Path) -> Run:
    """The run in ``path``; a ValueError says why a directory is not one."""
    path = Path(path)
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise ValueError(f"{path} is not a run directory (no {CONFIG_FILE})")
    config_text = config_file.read_text()
    try:
        config = yaml.safe_load(config_text) or {}
        metrics = read_metrics(path / METRICS_FILE)
        sft_eval, final_eval = _json(path / SFT_EVAL_FILE), _json(path / EVAL_FILE)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: a damaged run file ({str(error).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_file}: a config is a mapping of keys to values")
    replays = {}
    for stage in STAGES:
        if (saved := load_replays(path / REPLAYS_DIR / stage)) is not None:
            replays[stage] = saved
    return Run(path, config, config_text, metrics, sft_eval, final_eval, replays)


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def differing_settings(runs: list[Run]) -> list[str]:
    """The config keys whose values differ between runs (where and name aside)."""
    flats = [flatten(run.config) for run in runs]
    keys = sorted({key for flat in flats for key in flat} - {"out", "name"})
    return [key for key in keys if len({json.dumps(flat.get(key)) for flat in flats}) > 1]
