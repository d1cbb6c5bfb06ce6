"""The static HTML report: one page, its pictures in a folder beside it, nothing fetched.

Pages are Jinja templates with autoescaping on, so whatever a model wrote (``<script>``
included) shows as text.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from rlvlm.config import flatten
from rlvlm.evaluation.paper import SOURCE, paper_rows, versus
from rlvlm.io import write_atomic
from rlvlm.layout import REPLAYS_DIR
from rlvlm.report.plots import PANELS, curve
from rlvlm.report.runs import Run, differing_settings, load_run

PAGE = "index.html"
IMAGES = "images"
STAGE_LABELS = {"sft": "after SFT", "final": "after PPO (final)"}


def default_out(run_dirs: Sequence[str | Path]) -> Path:
    """``RUN_DIR/report`` for one run; ``comparison/`` beside the first run for several."""
    first = Path(run_dirs[0])
    return first / "report" if len(run_dirs) == 1 else first.parent / "comparison"


def write_report(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write the report of one run, or the comparison of several, to ``out``; its page."""
    if not run_dirs:
        raise ValueError("no run directories given")
    runs = [load_run(path) for path in run_dirs]
    if len({run.path.resolve() for run in runs}) < len(runs):
        raise ValueError("a run directory is given twice")
    out = Path(out) if out is not None else default_out(run_dirs)
    if len(runs) == 1:
        html = _render("run.html.j2", _run_page(runs[0], out))
    else:
        html = _render("compare.html.j2", _comparison_page(runs, out))
    return write_atomic(out / PAGE, html)


# ----------------------------------------------------------------------------- pages


def _run_page(run: Run, out: Path) -> dict[str, Any]:
    evaluations = [
        (STAGE_LABELS[stage], result)
        for stage, result in (("sft", run.sft_eval), ("final", run.final_eval))
        if result is not None
    ]
    measured = run.final_eval or run.sft_eval
    paper = [
        {
            "system": system,
            "rate": rate,
            "versus": versus(rate, measured["success_ci95"]) if measured else None,
        }
        for system, rate in paper_rows(run.game)
    ]
    return {
        "title": f"rlvlm run {run.name}",
        "run": run,
        "status": _status(run),
        "evaluations": evaluations,
        "paper": paper,
        "paper_source": SOURCE,
        "plots": _plots([run], out, "run"),
        "replays": _replays(run, out),
    }


def _comparison_page(runs: list[Run], out: Path) -> dict[str, Any]:
    settings = differing_settings(runs)
    rows = [
        {
            "run": run,
            "status": _status(run),
            "settings": [flatten(run.config).get(key) for key in settings],
        }
        for run in runs
    ]
    games = sorted({run.game for run in runs})
    return {
        "title": "rlvlm runs compared: " + ", ".join(run.name for run in runs),
        "runs": runs,
        "rows": rows,
        "settings": settings,
        "paper": {game: paper_rows(game) for game in games},
        "paper_source": SOURCE,
        "plots": _plots(runs, out, "compare"),
    }


def _status(run: Run) -> str:
    planned = run.updates_planned
    if run.final_eval is not None:
        seconds = run.final_eval.get("wall_seconds")
        took = f" in {seconds:.0f} s" if isinstance(seconds, (int, float)) else ""
        return f"finished: {_updates(run.updates_done)}{took}"
    of = f" of {planned}" if planned else ""
    return f"not finished: {run.updates_done}{of} PPO updates logged, no final evaluation yet"


def _updates(count: int) -> str:
    return f"{count} PPO update{'' if count == 1 else 's'}"


def _plots(runs: list[Run], out: Path, prefix: str) -> list[dict[str, str]]:
    """Draw every panel some run logged; the pictures' paths relative to the page."""
    games = {run.game for run in runs}
    reference = None
    if len(games) == 1 and (rows := paper_rows(games.pop())):
        system, rate = rows[0]
        reference = (f"{system}: {rate:.1%}", rate)
    plots = []
    for number, panel in enumerate(PANELS):
        png = curve(panel, runs, reference if panel.title == "Success rate" else None)
        if png is None:
            continue
        src = f"{IMAGES}/{prefix}-curve-{number:02d}.png"
        write_atomic(out / src, png)
        plots.append({"title": panel.title, "src": src})
    return plots


def _replays(run: Run, out: Path) -> list[dict[str, Any]]:
    """Each stage's recorded episodes, their pictures copied beside the page."""
    stages = []
    for stage, saved in run.replays.items():
        source, target = run.path / REPLAYS_DIR / stage, f"{IMAGES}/replays/{stage}"
        episodes = [
            {
                **episode,
                "final_src": _copy_picture(source, episode.get("final_image"), out, target),
                "steps": [
                    {**step, "src": _copy_picture(source, step.get("image"), out, target)}
                    for step in episode["steps"]
                ],
            }
            for episode in saved["episodes"]
        ]
        stages.append(
            {
                "label": STAGE_LABELS.get(stage, stage),
                "policy": saved.get("policy"),
                "episodes": episodes,
            }
        )
    return stages


def _copy_picture(source: Path, name: str | None, out: Path, target: str) -> str | None:
    """Copy picture ``name`` from ``source`` to ``out/target``; its path from the page, or
    None when it is missing (the page then says so)."""
    if not name or not (source / name).is_file():
        return None
    src = f"{target}/{name}"
    (out / src).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / name, out / src)
    return src


# ----------------------------------------------------------------------------- templates


def _percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def _interval(pair: Sequence[float] | None) -> str:
    return "–" if not pair else f"[{_percent(pair[0])}, {_percent(pair[1])}]"


def _number(value: float | None, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–" if value is None else str(value)
    return f"{value:.{digits}f}"


def _setting(value: Any) -> str:
    return "–" if value is None else str(value)


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("rlvlm.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENVIRONMENT.filters |= {
    "percent": _percent,
    "interval": _interval,
    "number": _number,
    "setting": _setting,
}


def _render(template: str, context: dict[str, Any]) -> str:
    return _ENVIRONMENT.get_template(template).render(**context)
