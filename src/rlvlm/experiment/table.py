"""An experiment's results: per cell and per group of seeds, as JSON, a markdown table and
learning curves (held-out success, and the share of replies whose thoughts state the picture
truly, against environment steps, a band over the seeds)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from rlvlm.experiment.spec import Cell, Experiment
from rlvlm.io import write_atomic, write_json
from rlvlm.layout import CONFIG_FILE
from rlvlm.report.plots import png
from rlvlm.report.runs import Run, load_run

RESULTS_JSON, RESULTS_MD, CURVES_PNG = "results.json", "results.md", "curves.png"
THOUGHTS_PNG = "thoughts.png"
#: Figures averaged over seeds: held-out success, and thought accuracy (without CoT: none).
FIGURES = ("sft_success", "final_success", "peak_success", "sft_thoughts", "final_thoughts")


def cell_row(experiment: Experiment, cell: Cell) -> dict[str, Any]:
    """What one cell has reached so far: its SFT and final held-out success with their
    intervals and thought accuracy, and the peak held-out success after a PPO update within
    the step budget."""
    row: dict[str, Any] = {"cell": cell.name, "axes": cell.axes, "updates_done": 0}
    if not (cell.run_dir / CONFIG_FILE).is_file():
        return row | {"status": "new"}
    run = load_run(cell.run_dir)
    row["status"] = "done" if run.final_eval else "started"
    row["updates_done"] = run.updates_done
    if run.sft_eval:
        row |= {
            "sft_success": run.sft_eval["success_rate"],
            "sft_ci95": run.sft_eval["success_ci95"],
            "sft_thoughts": run.sft_eval.get("thought_accuracy"),
        }
    if run.final_eval:
        row |= {
            "final_success": run.final_eval["success_rate"],
            "final_ci95": run.final_eval["success_ci95"],
            "final_thoughts": run.final_eval.get("thought_accuracy"),
            "wall_seconds": run.final_eval.get("wall_seconds"),
        }
    steps, success = curve(run)
    within = [
        (s, v)
        for s, v in zip(steps, success, strict=True)
        if s > 0 and (experiment.budget is None or s <= experiment.budget)
    ]
    if within:
        peak_steps, peak = max(within, key=lambda point: (point[1], -point[0]))
        row |= {"peak_success": peak, "peak_env_steps": peak_steps}
    row["env_steps"] = run.updates_done * run.steps_per_update
    return row


def curve(run: Run, key: str = "eval/success_rate") -> tuple[list[int], list[float]]:
    """A held-out figure against environment steps (the SFT checkpoint's at step 0)."""
    updates, values = run.series(key)
    per_update = run.steps_per_update
    return [update * per_update for update in updates], values


def aggregate(experiment: Experiment, cells: Sequence[Cell]) -> dict[str, Any]:
    """Every cell's row, and per group (the cells that differ only in their seed) the mean
    and standard deviation over its finished seeds."""
    rows = [cell_row(experiment, cell) for cell in cells]
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        axes = {key: row["axes"][key] for key in experiment.seedless_axes}
        group = groups.setdefault(
            _label(axes), {"group": _label(axes), "axes": axes, "cells": 0, "done": 0}
        )
        group["cells"] += 1
        group["done"] += row["status"] == "done"
    for label, group in groups.items():
        done = [
            row
            for row in rows
            if row["status"] == "done" and _label(_seedless(experiment, row)) == label
        ]
        for key in FIGURES:
            values = [row[key] for row in done if row.get(key) is not None]
            if values:
                group[f"{key}_mean"] = statistics.fmean(values)
                group[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
                group[f"{key}_seeds"] = values
    return {
        "experiment": experiment.name,
        "description": experiment.description,
        "budget": experiment.budget,
        "groups": list(groups.values()),
        "cells": rows,
    }


def markdown(results: dict[str, Any]) -> str:
    """Two tables: groups (mean ± std over seeds, each seed's figure beside it) and cells."""
    lines = [f"# {results['experiment']}", ""]
    if results["description"]:
        lines += [results["description"], ""]
    budget = results["budget"]
    peak = f"peak within {budget:,} env steps" if budget else "peak"
    lines += [
        "Held-out success rates (%). Groups: mean ± standard deviation over the finished "
        "seeds, each seed's value in brackets.",
        "",
        f"| group | seeds done | after SFT | final | {peak} | true thoughts, SFT | final |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in results["groups"]:
        cells = [_mean_std(group, key) for key in FIGURES]
        lines.append(
            f"| {group['group']} | {group['done']}/{group['cells']} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "| cell | status | updates | after SFT [95 % CI] | final [95 % CI] | "
        f"{peak} (at step) | wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["cells"]:
        peak_cell = (
            f"{100 * row['peak_success']:.1f} ({row['peak_env_steps']:,})"
            if "peak_success" in row
            else ""
        )
        wall = f"{row['wall_seconds'] / 60:.1f} min" if row.get("wall_seconds") else ""
        lines.append(
            f"| {row['cell']} | {row['status']} | {row['updates_done']} | "
            f"{_rate(row, 'sft')} | {_rate(row, 'final')} | {peak_cell} | {wall} |"
        )
    return "\n".join(lines) + "\n"


def curves(
    experiment: Experiment,
    cells: Sequence[Cell],
    metric: str = "eval/success_rate",
    ylabel: str = "held-out success (%)",
) -> bytes | None:
    """A held-out rate against environment steps: a panel per game, a line per group (the
    mean over its seeds that have reached each step) with a band from the lowest to the
    highest of them. None before any cell has logged it."""
    by_group: dict[str, list[tuple[list[int], list[float]]]] = {}
    games: dict[str, str] = {}
    for cell in cells:
        if not (cell.run_dir / CONFIG_FILE).is_file():
            continue
        steps, success = curve(load_run(cell.run_dir), metric)
        if steps:
            label = _label({k: cell.axes[k] for k in experiment.seedless_axes if k != "game"})
            key = f"{cell.config.game}\0{label}"
            by_group.setdefault(key, []).append((steps, success))
            games[key] = cell.config.game
    if not by_group:
        return None
    panels = sorted(set(games.values()))
    figure = Figure(figsize=(4.2 * len(panels), 3.3), dpi=100, layout="constrained")
    axes_by_game = dict(zip(panels, figure.subplots(1, len(panels), squeeze=False)[0], strict=True))
    for index, (key, seeds) in enumerate(sorted(by_group.items())):
        axes = axes_by_game[games[key]]
        label = key.split("\0")[1] or "mean over seeds"
        points = [dict(zip(steps, values, strict=True)) for steps, values in seeds]
        shared = sorted({step for steps, _ in seeds for step in steps})
        # At each step, the seeds that have reached it (cells still running have fewer).
        table = [[100 * seed[s] for seed in points if s in seed] for s in shared]
        colour = f"C{index % 10}"
        axes.plot(
            shared,
            [statistics.fmean(v) for v in table],
            "-o",
            color=colour,
            markersize=3,
            label=f"{label} ({len(seeds)} seeds)",
        )
        axes.fill_between(
            shared,
            [min(v) for v in table],
            [max(v) for v in table],
            color=colour,
            alpha=0.2,
            linewidth=0,
        )
    for game, axes in axes_by_game.items():
        axes.set_title(game, fontsize=10)
        axes.set_xlabel("environment steps", fontsize=9)
        axes.set_ylabel(ylabel, fontsize=9)
        axes.set_ylim(-3, 103)
        axes.grid(alpha=0.3)
        axes.tick_params(labelsize=8)
        axes.legend(fontsize=7)
    return png(figure)


def write_results(experiment: Experiment, cells: Sequence[Cell], out: Path) -> dict[str, Any]:
    """``results.json``, ``results.md``, ``curves.png`` and ``thoughts.png`` (thought
    accuracy, where replies have CoT) in ``out``, written atomically."""
    results = aggregate(experiment, cells)
    write_json(out / RESULTS_JSON, results)
    write_atomic(out / RESULTS_MD, markdown(results))
    if (picture := curves(experiment, cells)) is not None:
        write_atomic(out / CURVES_PNG, picture)
    thoughts = curves(experiment, cells, "eval/thought_accuracy", "true thoughts (%)")
    if thoughts is not None:
        write_atomic(out / THOUGHTS_PNG, thoughts)
    return results


def _seedless(experiment: Experiment, row: dict[str, Any]) -> dict[str, Any]:
    return {key: row["axes"][key] for key in experiment.seedless_axes}


def _label(axes: dict[str, Any]) -> str:
    return ", ".join(str(v) if k == "game" else f"{k}={v}" for k, v in axes.items())


def _mean_std(group: dict[str, Any], key: str) -> str:
    if f"{key}_mean" not in group:
        return ""
    seeds = ", ".join(f"{100 * v:.1f}" for v in group[f"{key}_seeds"])
    return f"{100 * group[f'{key}_mean']:.1f} ± {100 * group[f'{key}_std']:.1f} [{seeds}]"


def _rate(row: dict[str, Any], stage: str) -> str:
    if f"{stage}_success" not in row:
        return ""
    low, high = row[f"{stage}_ci95"]
    return f"{100 * row[f'{stage}_success']:.1f} [{100 * low:.1f}, {100 * high:.1f}]"
