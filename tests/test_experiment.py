"""Experiment grids: specs and their cells, a small grid run to the end and skipped when run
again, a resumed cell, a changed spec refused, the table and the curves, a grid carried on
from its results.json alone, and the CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from rlvlm.cli import main
from rlvlm.config import TrainConfig, flatten, load_config, to_yaml
from rlvlm.experiment import (
    load_experiment,
    run_cells,
    spec_names,
    status,
    statuses,
    write_results,
)
from rlvlm.experiment.runner import PPO_ONLY, _thread_budget, check_unchanged, sft_stage
from rlvlm.experiment.table import curves, fingerprint

#: A few seconds per cell: every stage, at the smallest size.
TINY = [
    "vision.steps=0",
    "sft.episodes=2",
    "sft.epochs=1",
    "ppo.updates=2",
    "ppo.num_envs=2",
    "ppo.steps_per_env=2",
    "ppo.minibatch_size=2",
    "ppo.max_new_tokens=8",
    "eval.episodes=4",
    "eval.every=1",
    "eval.replays=0",
]


def write_spec(folder: Path, **changes) -> Path:
    spec = {
        "name": "grid",
        "config": "tiny/{game}",
        "overrides": TINY,
        "axes": {"game": ["numberline"], "seed": [0, 1]},
        "budget": 6,
    } | changes
    path = folder / "grid.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def test_cells_cross_the_axes_and_name_themselves(tmp_path):
    spec = load_experiment(
        write_spec(
            tmp_path, axes={"game": ["numberline", "blackjack"], "ppo.thought_coef": [0.3, 1]}
        )
    )
    cells = spec.cells(tmp_path)
    assert [cell.name for cell in cells] == [
        "numberline-thought_coef0.3",
        "numberline-thought_coef1",
        "blackjack-thought_coef0.3",
        "blackjack-thought_coef1",
    ]
    assert cells[2].config.game == "blackjack" and cells[2].config.ppo.thought_coef == 0.3
    assert cells[3].config.ppo.updates == 2  # the spec's overrides reach every cell
    assert cells[0].run_dir == tmp_path / "grid" / "numberline-thought_coef0.3"
    assert spec.seedless_axes == ["game", "ppo.thought_coef"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"axes": {}}, "axes must map"),
        ({"axes": {"seed": []}}, "non-empty list"),
        ({"colour": "red"}, "unknown keys"),
        ({"axes": {"game": ["numberline"], "ppo.nonsense": [1]}}, "cell numberline-nonsense1"),
        ({"axes": {"game": ["chess"]}}, "cell chess: no config 'tiny/chess'"),
        ({"config": "tiny/numberline", "axes": {"game": ["chess"]}}, "unknown game 'chess'"),
        ({"budget": 0}, "budget"),
    ],
)
def test_a_bad_spec_is_refused_before_anything_runs(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        load_experiment(write_spec(tmp_path, **changes)).cells(tmp_path)


def test_shipped_specs_load():
    assert "paper/table2" in spec_names()
    for name in spec_names():
        cells = load_experiment(name).cells()
        assert len({cell.name for cell in cells}) == len(cells)


def test_a_grid_runs_resumes_and_aggregates(tmp_path):
    spec = load_experiment(write_spec(tmp_path))
    cells = spec.cells(tmp_path)
    said: list[str] = []
    # The first cell was stopped before its run began: its folder holds only its config.
    cells[0].run_dir.mkdir(parents=True)
    (cells[0].run_dir / "config.yaml").write_text(to_yaml(cells[0].config))
    assert [status(cell) for cell in cells] == ["started", "new"]
    assert run_cells(spec, cells, workers=2, say=said.append) == []
    assert said[0] == "grid: 0 of 2 cells done, 2 to run, 2 at a time (local)"
    assert [status(cell) for cell in cells] == ["done", "done"]
    logs = sorted(path.name for path in (tmp_path / "grid" / "logs").iterdir())
    assert logs == ["numberline-seed0.log", "numberline-seed1.log"]

    run_cells(spec, cells, say=said.append)  # nothing left to do
    assert said[-1] == "grid: 2 of 2 cells done, 0 to run, 1 at a time (local)"

    results = write_results(spec, cells, tmp_path / "grid")
    (group,) = results["groups"]
    assert group["done"] == 2 and len(group["final_success_seeds"]) == 2
    for row in results["cells"]:
        assert row["status"] == "done" and row["updates_done"] == 2
        assert row["env_steps"] == 8 and row["peak_env_steps"] <= 6  # within the budget
        final = json.loads((tmp_path / "grid" / row["cell"] / "eval.json").read_text())
        assert row["final_success"] == final["success_rate"]
        assert row["final_thoughts"] == final["thought_accuracy"]
    assert group["final_success_mean"] == pytest.approx(sum(group["final_success_seeds"]) / 2)
    assert len(group["sft_thoughts_seeds"]) == 2
    # every seed is drawn (a band over both), not the first cell's alone
    rows = results["cells"]
    assert curves(spec, rows) != curves(spec, rows[:1])
    for name in ("results.json", "results.md", "curves.png", "thoughts.png"):
        assert (tmp_path / "grid" / name).stat().st_size > 0
    assert "| numberline | 2/2 |" in (tmp_path / "grid" / "results.md").read_text()

    # On another machine, with the committed results.json alone: its cells are done, in the
    # runner and in the table, curves included.
    figures = [(tmp_path / "grid" / name).read_bytes() for name in ("curves.png", "thoughts.png")]
    shutil.rmtree(cells[0].run_dir)
    assert statuses(cells) == {"numberline-seed0": "done", "numberline-seed1": "done"}
    run_cells(spec, cells, say=said.append)
    assert said[-1] == "grid: 2 of 2 cells done, 0 to run, 1 at a time (local)"
    assert write_results(spec, cells, tmp_path / "grid") == json.loads(json.dumps(results))
    again = [(tmp_path / "grid" / name).read_bytes() for name in ("curves.png", "thoughts.png")]
    assert again == figures
    # A row from before results kept curves and fingerprints: left out of the curves, said
    # so in the table; refused as a record, since its settings cannot be checked.
    old = json.loads((tmp_path / "grid" / "results.json").read_text())
    del old["cells"][0]["curves"]
    (tmp_path / "grid" / "results.json").write_text(json.dumps(old))
    write_results(spec, cells, tmp_path / "grid")
    assert (
        "leave out the cells recorded before results kept their curves: numberline-seed0."
        in (tmp_path / "grid" / "results.md").read_text()
    )
    del old["cells"][0]["settings"]
    (tmp_path / "grid" / "results.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="without its settings' fingerprint"):
        write_results(spec, cells, tmp_path / "grid")
    (tmp_path / "grid" / "results.json").write_text(json.dumps(results))
    # ... unless the spec now asks for other settings than the recorded run had.
    changed = load_experiment(write_spec(tmp_path, overrides=[*TINY, "ppo.lr=0.1"]))
    with pytest.raises(ValueError, match=r"numberline-seed0 is recorded in .* other settings"):
        run_cells(changed, changed.cells(tmp_path)[:1], say=said.append)


def test_cells_that_differ_only_in_ppo_share_one_sft_stage(tmp_path):
    """A lambda sweep makes its SFT stage once: the second cell gets a copy of the first's
    and goes on from it exactly as it would have from its own (the same cell run alone)."""
    axes = {"game": ["numberline"], "ppo.thought_coef": [0.3, 1]}
    spec = load_experiment(write_spec(tmp_path, axes=axes))
    cells = spec.cells(tmp_path)
    assert run_cells(spec, cells, say=lambda _: None) == []
    lender, borrower = (cell.run_dir for cell in cells)
    log = (tmp_path / "grid" / "logs" / f"{cells[1].name}.log").read_text()
    assert "demonstrations" in (tmp_path / "grid" / "logs" / f"{cells[0].name}.log").read_text()
    assert "demonstrations" not in log and "sft:" not in log  # nothing recorded or trained
    for part in ("sft_eval.json", "sft/rlvlm.json", "data/data.jsonl"):
        assert (borrower / part).read_bytes() == (lender / part).read_bytes()

    alone = tmp_path / "alone"
    alone.mkdir()
    single = load_experiment(write_spec(alone, axes=axes | {"ppo.thought_coef": [1]}))
    (cell,) = single.cells(alone)
    assert cell.name == cells[1].name
    assert run_cells(single, [cell], say=lambda _: None) == []
    assert _run_record(cell.run_dir) == _run_record(borrower)


def test_the_ppo_only_settings_are_config_keys():
    assert set(PPO_ONLY) <= flatten(TrainConfig().to_dict()).keys()
    assert not {"ppo.cot", "ppo.temperature", "ppo.max_new_tokens"} & set(PPO_ONLY)  # SFT eval


def test_ppo_sampling_temperature_is_shared_only_where_the_evaluation_sets_its_own():
    """The SFT checkpoint is evaluated at ``eval.temperature``, or at PPO's where that is
    unset: only in the first case may two PPO temperatures share one SFT stage."""
    cool, warm = (load_config("tiny/points24", [f"ppo.temperature={t}"]) for t in (0.2, 1.0))
    assert cool.eval.temperature is not None
    assert sft_stage(cool) == sft_stage(warm)
    cool, warm = (
        load_config("tiny/points24", [f"ppo.temperature={t}", "eval.temperature=null"])
        for t in (0.2, 1.0)
    )
    assert sft_stage(cool) != sft_stage(warm)


def test_cells_split_the_threads_they_are_given(monkeypatch):
    """OMP_NUM_THREADS, when set, is the budget the cells share; else the machine's cores."""
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    assert _thread_budget() == 6
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert _thread_budget() == os.cpu_count()


def _run_record(run_dir: Path) -> tuple[list[dict], dict]:
    """A run's metrics and final evaluation, timings aside."""
    timed = ("time/", "charts/SPS", "charts/tokens_per_s")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    result = json.loads((run_dir / "eval.json").read_text())
    del result["wall_seconds"]
    return [{k: v for k, v in row.items() if not k.startswith(timed)} for row in rows], result


def test_the_ray_backend_runs_cells_as_tasks(tmp_path):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    spec = load_experiment(write_spec(tmp_path))
    cells = spec.cells(tmp_path)
    said: list[str] = []
    try:
        assert run_cells(spec, cells, workers=2, backend="ray", say=said.append) == []
    finally:
        ray.shutdown()
    assert said[0] == "grid: 0 of 2 cells done, 2 to run, 2 at a time (ray)"
    assert [status(cell) for cell in cells] == ["done", "done"]
    assert all(line.split(": ")[1].startswith("SFT ") for line in said[1:])


def test_a_started_cell_whose_spec_changed_is_refused(tmp_path):
    before = load_experiment(write_spec(tmp_path, overrides=[*TINY, "ppo.lr=0.1"]))
    started = before.cells(tmp_path)[0]
    started.run_dir.mkdir(parents=True)
    (started.run_dir / "config.yaml").write_text(to_yaml(started.config))
    now = load_experiment(write_spec(tmp_path)).cells(tmp_path)[0]
    with pytest.raises(
        ValueError,
        match=r"numberline-seed0 was started with other settings "
        r"\(ppo.lr\)",
    ):
        check_unchanged(now)


def test_cli_dry_run_lists_cells_with_estimates(tmp_path, capsys):
    assert main(["experiment", str(write_spec(tmp_path)), "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "grid: 2 cells (1 x 2 of game, seed)" in out
    assert "numberline-seed1" in out and "h of work left" in out
    assert not (tmp_path / "grid").exists()


def test_a_slice_runs_its_cells_and_the_table_keeps_every_cell(tmp_path, capsys):
    """--only: the rows other slices recorded stay in results.json (on a fresh machine,
    with the committed file put back, seed 0 is a record and seed 1 is run here)."""
    spec_file = write_spec(tmp_path)
    seed0, seed1 = load_experiment(spec_file).cells(tmp_path)
    record = {"cell": seed0.name, "axes": seed0.axes, "status": "done", "updates_done": 2}
    record |= {"game": "numberline", "settings": fingerprint(seed0.config), "curves": {}}
    (tmp_path / "grid").mkdir()
    (tmp_path / "grid" / "results.json").write_text(json.dumps({"cells": [record]}))
    argv = ["experiment", str(spec_file), "--out", str(tmp_path), "--only", "seed=1"]

    assert main([*argv, "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "grid: 1 of its 2 cells (1 x 2 of game, seed)" in listed
    assert seed1.name in listed and seed0.name not in listed
    assert main(argv) == 0
    rows = json.loads((tmp_path / "grid" / "results.json").read_text())["cells"]
    assert [row["status"] for row in rows] == ["done", "done"]
    assert rows[0] == record and not seed0.run_dir.exists()
    assert (seed1.run_dir / "eval.json").is_file()


@pytest.mark.parametrize(
    ("only", "message"),
    [
        ("seed", "'seed' is not axis=value; the axes: game, seed"),
        ("seed=7", "'seed=7': seed takes [0, 1] here"),
    ],
)
def test_a_bad_slice_is_one_line_before_anything_runs(tmp_path, capsys, only, message):
    argv = ["experiment", str(write_spec(tmp_path)), "--out", str(tmp_path), "--only", only]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"rlvlm experiment: error: argument --only: {message}\n"
    assert not (tmp_path / "grid").exists()


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["experiment", "paper/nothing"]) == 2
    assert main(["experiment", str(write_spec(tmp_path, axes={"seed": "x"}))]) == 2
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert main(["experiment", str(write_spec(tmp_path)), "--out", str(blocked), "--table"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("rlvlm experiment: error:") for line in errors)
