"""Per-update metrics: a JSONL file (rewritten atomically) and TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rlvlm.io import write_atomic
from rlvlm.layout import METRICS_FILE, TENSORBOARD_DIR


class MetricsLog:
    """``run_dir/metrics.jsonl``, one line per update, and ``run_dir/tensorboard``."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = read_metrics(self.path) if enabled else []
        self._writer = None

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
        writer = self._tensorboard()
        for key, value in row.items():
            if key != "update" and value is not None:
                writer.add_scalar(key, value, update)
        writer.flush()

    def _flush(self) -> None:
        if self.enabled:
            write_atomic(self.path, "".join(json.dumps(row) + "\n" for row in self.rows))

    def _tensorboard(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.path.parent / TENSORBOARD_DIR))
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
