"""An experiment's results: per cell and per group of seeds, as JSON, a markdown table and
learning curves (held-out success, and the share of replies whose thoughts state the picture
truly, against environment steps, a band over the seeds).

``results.json`` is the experiment's record: a finished cell's row keeps its curves and a
fingerprint of its settings, so that a grid carried on elsewhere (a fresh machine, its run
directories gone, the committed ``results.json`` put back in the experiment's folder) counts
the cells it records as done, in its table and its curves alike.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from rlvlm.config import TrainConfig, flatten
from rlvlm.experiment.spec import Cell, Experiment
from rlvlm.io import read_json, write_atomic, write_json
from rlvlm.layout import CONFIG_FILE, resume_config
from rlvlm.report.plots import png
from rlvlm.report.runs import Run, load_run

RESULTS_JSON, RESULTS_MD, CURVES_PNG = "results.json", "results.md", "curves.png"
THOUGHTS_PNG = "thoughts.png"
#: Figures averaged over seeds: held-out success, and thought accuracy (without CoT: none).
FIGURES = ("sft_success", "final_success", "peak_success", "sft_thoughts", "final_thoughts")
#: The held-out series a row keeps, as [environment step, value] pairs, for the curves.
SERIES = ("eval/success_rate", "eval/thought_accuracy")


def cell_row(experiment: Experiment, cell: Cell) -> dict[str, Any]:
    """What one cell has reached so far: its SFT and final held-out success with their
    intervals and thought accuracy, and the peak held-out success after a PPO update within
    the step budget."""
    row: dict[str, Any] = {"cell": cell.name, "axes": cell.axes, "updates_done": 0}
    if not (cell.run_dir / CONFIG_FILE).is_file():
        return row | {"status": "new"}
    run = load_run(cell.run_dir)
    row["status"] = "done" if run.final_eval else "started"
    row["game"] = cell.config.game
    row["settings"] = fingerprint(resume_config(cell.run_dir))  # as run, not as the spec says
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
    row["curves"] = {
        key: [list(point) for point in zip(*curve(run, key), strict=True)] for key in SERIES
    }
    return row


def fingerprint(config: TrainConfig, ignore: Iterable[str] = ()) -> str:
    """A short digest of what a cell runs: its settings that differ from the defaults, where
    it runs aside (``out``; ``name`` is the cell's) and any keys in ``ignore``, so that a key
    added later with a default leaves older records valid."""
    defaults = flatten(TrainConfig().to_dict())
    skip = {"out", "name", *ignore}
    settings = {
        key: value
        for key, value in flatten(config.to_dict()).items()
        if key not in skip and defaults.get(key) != value
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def recorded(cells: Sequence[Cell], folder: Path) -> dict[str, dict[str, Any]]:
    """The rows of the finished cells that ``results.json`` in ``folder`` records and whose
    run directory is not here, by cell name. A row recorded with other settings than the
    cell's now is a ValueError: a table never mixes two versions of a spec."""
    path = folder / RESULTS_JSON
    results = read_json(path)
    if results is None:
        return {}
    if not isinstance(results, dict) or not isinstance(results.get("cells"), list):
        raise ValueError(f"{path} is not an experiment's results (no list of cells)")
    done = {
        row.get("cell"): row
        for row in results["cells"]
        if isinstance(row, dict) and row.get("status") == "done"
    }
    kept = {}
    for cell in cells:
        if cell.name not in done or (cell.run_dir / CONFIG_FILE).is_file():
            continue
        settings = done[cell.name].get("settings")
        if settings != fingerprint(cell.config):
            how = "with other settings" if settings else "without its settings' fingerprint"
            raise ValueError(
                f"cell {cell.name} is recorded in {path} {how}; "
                "restore the spec, or remove its row there to run it afresh"
            )
        kept[cell.name] = done[cell.name]
    return kept


def curve(run: Run, key: str = "eval/success_rate") -> tuple[list[int], list[float]]:
    """A held-out figure against environment steps (the SFT checkpoint's at step 0)."""
    updates, values = run.series(key)
    per_update = run.steps_per_update
    return [update * per_update for update in updates], values


def aggregate(
    experiment: Experiment, cells: Sequence[Cell], kept: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Every cell's row (``kept``'s for the cells it records, see ``recorded``), and per group
    (the cells that differ only in their seed) the mean and standard deviation over its
    finished seeds."""
    kept = kept or {}
    rows = [kept.get(cell.name) or cell_row(experiment, cell) for cell in cells]
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
    done = [row for row in results["cells"] if row["status"] == "done"]
    if bare := [row["cell"] for row in done if "curves" not in row]:
        lines += [
            "",
            "The curves leave out the cells recorded before results kept their curves: "
            + ", ".join(bare)
            + ".",
        ]
    return "\n".join(lines) + "\n"


def curves(
    experiment: Experiment,
    rows: Sequence[dict[str, Any]],
    metric: str = "eval/success_rate",
    ylabel: str = "held-out success (%)",
) -> bytes | None:
    """A held-out rate against environment steps: a panel per game, a line per group (the
    mean over its seeds that have reached each step) with a band from the lowest to the
    highest of them. None before any cell has logged it."""
    by_group: dict[str, list[tuple[list[int], list[float]]]] = {}
    games: dict[str, str] = {}
    for row in rows:
        if points := row.get("curves", {}).get(metric):
            label = _label({k: row["axes"][k] for k in experiment.seedless_axes if k != "game"})
            key = f"{row['game']}\0{label}"
            steps, values = zip(*points, strict=True)
            by_group.setdefault(key, []).append((list(steps), list(values)))
            games[key] = row["game"]
    if not by_group:
        return None
    panels = sorted(set(games.values()))
    figure = Figure(figsize=(4.2 * len(panels), 3.3), dpi=100, layout="constrained")
    axes_by_game = dict(zip(panels, figure.subplots(1, len(panels), squeeze=False)[0], strict=True))
    labels = sorted({key.split("\0")[1] for key in by_group})  # a group's colour in every panel
    for key, seeds in sorted(by_group.items()):
        axes = axes_by_game[games[key]]
        label = key.split("\0")[1]
        colour = f"C{labels.index(label) % 10}"
        label = label or "mean over seeds"
        points = [dict(zip(steps, values, strict=True)) for steps, values in seeds]
        shared = sorted({step for steps, _ in seeds for step in steps})
        # At each step, the seeds that have reached it (cells still running have fewer).
        table = [[100 * seed[s] for seed in points if s in seed] for s in shared]
        axes.plot(
            shared,
            [statistics.fmean(v) for v in table],
            "-o",
            color=colour,
            markersize=3,
            label=f"{label} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})",
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
    accuracy, where replies have CoT) in ``out``, written atomically; the cells that
    ``results.json`` there records (``recorded``) keep their rows."""
    results = aggregate(experiment, cells, recorded(cells, out))
    write_json(out / RESULTS_JSON, results)
    write_atomic(out / RESULTS_MD, markdown(results))
    if (picture := curves(experiment, results["cells"])) is not None:
        write_atomic(out / CURVES_PNG, picture)
    thoughts = curves(experiment, results["cells"], "eval/thought_accuracy", "true thoughts (%)")
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
