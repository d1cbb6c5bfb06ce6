"""The CNN + RL baseline's table: every `rlvlm baseline cnn` run folder given, grouped by game
and budget, mean ± standard deviation over the seeds, each seed beside it.

    python docs/results/cnn/collect.py OUT RUN [RUN ...]

Writes OUT/results.json and OUT/results.md.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from rlvlm.io import write_atomic, write_json


def main(out: Path, runs: list[Path]) -> None:
    cells = []
    for run in sorted(runs):
        done = json.loads((run / "eval.json").read_text())
        settings = done["settings"]
        cells.append(
            {
                "cell": f"{run.parent.name}/{run.name}",
                "game": settings["game"],
                "seed": settings["seed"],
                "env_steps": done["env_steps"],
                "final_success": done["success_rate"],
                "final_ci95": done["success_ci95"],
                "peak_success": done["peak_success_rate"],
                "peak_env_steps": done["peak_step"],
                "format_error_rate": done.get("format_error_rate"),
                "train_seconds": done["train_seconds"],
                "settings": settings,
            }
        )
    groups = defaultdict(list)
    for cell in cells:
        groups[cell["game"], cell["env_steps"]].append(cell)
    rows = []
    for (game, steps), members in sorted(groups.items()):
        row = {"game": game, "env_steps": steps, "seeds": [m["seed"] for m in members]}
        for key in ("final_success", "peak_success", "peak_env_steps"):
            values = [m[key] for m in members]
            row[key] = values
            row[f"{key}_mean"] = statistics.fmean(values)
            row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", {"groups": rows, "cells": cells})

    def rate(row: dict, key: str) -> str:
        seeds = ", ".join(f"{100 * v:.1f}" for v in row[key])
        return f"{100 * row[f'{key}_mean']:.1f} ± {100 * row[f'{key}_std']:.1f} [{seeds}]"

    lines = [
        "# CNN + RL",
        "",
        "SB3 PPO with `CnnPolicy` on 84 px pictures (`rlvlm baseline cnn`), held-out success",
        "(%) on the deals every VLM run plays. Mean ± standard deviation over the seeds, each",
        "seed in brackets. Steps to the peak: the first held-out evaluation at the peak.",
        "",
        "| game | env steps | final | peak | steps to the peak | time, evaluations included |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        members = groups[row["game"], row["env_steps"]]
        steps = ", ".join(f"{s:,}" for s in row["peak_env_steps"])
        seconds = [m["train_seconds"] for m in members]
        lines.append(
            f"| {row['game']} | {row['env_steps']:,} | {rate(row, 'final_success')} | "
            f"{rate(row, 'peak_success')} | {steps} | "
            f"{min(seconds):.0f}-{max(seconds):.0f} s |"
        )
    write_atomic(out / "results.md", "\n".join(lines) + "\n")


def _refuse(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        _refuse(f"usage: python {sys.argv[0]} OUT RUN [RUN ...]")
    runs = [Path(arg) for arg in sys.argv[2:]]
    if unfinished := [str(run) for run in runs if not (run / "eval.json").is_file()]:
        _refuse(f"no eval.json (not a finished CNN run): {', '.join(unfinished)}")
    main(Path(sys.argv[1]), runs)
