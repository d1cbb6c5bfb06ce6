"""Per-update metrics: a JSONL file (rewritten atomically), and accelerate's experiment
trackers (TensorBoard by default; Weights & Biases or MLflow where the user names them)."""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlvlm.config import flatten
from rlvlm.io import write_atomic
from rlvlm.layout import METRICS_FILE, TENSORBOARD_DIR


class MetricsLog:
    """``run_dir/metrics.jsonl``, one line per update, and the same figures to every tracker
    in ``log_with``, started with the run's ``config`` at the first update written."""

    def __init__(
        self,
        run_dir: Path,
        enabled: bool = True,
        log_with: Sequence[str] = ("tensorboard",),
        config: dict[str, Any] | None = None,
    ):
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = read_metrics(self.path) if enabled else []
        self.log_with, self.config = list(log_with), config or {}
        self._trackers: list[Any] | None = None

    def truncate(self, update: int) -> None:
        """Forget updates after ``update`` (a resumed run redoes them)."""
        self.rows = [row for row in self.rows if row["update"] <= update]
        self._flush()

    def write(self, update: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"update": update} | {k: _finite_or_none(v) for k, v in metrics.items()}
        self.rows.append(row)
        self._flush()
        values = {k: v for k, v in row.items() if k != "update" and v is not None}
        for tracker in self._started():
            tracker.log(values, step=update)

    def _flush(self) -> None:
        if self.enabled:
            write_atomic(self.path, "".join(json.dumps(row) + "\n" for row in self.rows))

    def _started(self) -> list[Any]:
        if self._trackers is None:
            from accelerate.tracking import LOGGER_TYPE_TO_CLASS

            run_dir = self.path.parent
            settings = {
                "tensorboard": {"run_name": TENSORBOARD_DIR, "logging_dir": run_dir},
                "wandb": {"run_name": "rlvlm", "name": run_dir.name, "dir": str(run_dir)},
                "mlflow": {"experiment_name": "rlvlm", "run_name": run_dir.name},
            }
            # A tracker takes a flat set of scalars and strings: lists become strings.
            config = {
                k: str(v) if isinstance(v, list) else v for k, v in flatten(self.config).items()
            }
            self._trackers = []
            for name in self.log_with:
                tracker = LOGGER_TYPE_TO_CLASS[name](**settings[name])
                tracker.start()
                tracker.store_init_configuration(config)
                self._trackers.append(tracker)
        return self._trackers

    def close(self) -> None:
        for tracker in self._trackers or []:
            tracker.finish()
        self._trackers = None


def check_trackers(log_with: Sequence[str]) -> None:
    """A ValueError, before any work, for a tracker whose package is not installed."""
    for name in log_with:
        if importlib.util.find_spec(name) is None:
            raise ValueError(f"log_with names {name}, which is not installed (pip install {name})")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
