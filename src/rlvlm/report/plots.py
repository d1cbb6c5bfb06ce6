"""Training curves as PNG pictures, drawn with matplotlib's object API (no global state)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rlvlm.report.runs import Run


@dataclass(frozen=True)
class Panel:
    title: str
    #: (metrics.jsonl key, its label in the legend)
    series: tuple[tuple[str, str], ...]
    percent: bool = False
    #: A rate shown on its whole 0-100 % scale, so that runs and stages compare at a glance.
    full_scale: bool = False


PANELS = (
    Panel(
        "Success rate",
        (
            ("charts/success_rate", "training episodes"),
            ("eval/success_rate", "held-out evaluation"),
        ),
        percent=True,
        full_scale=True,
    ),
    Panel(
        "Episode return",
        (
            ("charts/episode_return", "training episodes"),
            ("eval/mean_return", "held-out evaluation"),
        ),
    ),
    Panel(
        "Format errors (per step)",
        (
            ("charts/format_error_rate", "training"),
            ("eval/format_error_rate", "held-out evaluation"),
        ),
        percent=True,
        full_scale=True,
    ),
    Panel(
        "Thought accuracy",
        (("charts/thought_accuracy", "training"), ("eval/thought_accuracy", "held-out evaluation")),
        percent=True,
        full_scale=True,
    ),
    Panel(
        "Episode length",
        (
            ("charts/episode_length", "training episodes"),
            ("eval/mean_length", "held-out evaluation"),
        ),
    ),
    Panel("Policy loss", (("losses/policy_loss", "policy loss"),)),
    Panel("Value loss", (("losses/value_loss", "value loss"),)),
    Panel(
        "KL",
        (
            ("losses/approx_kl", "approx. KL to the rollout policy"),
            ("losses/kl_reference", "KL to the starting policy"),
        ),
    ),
    Panel("Clip fraction", (("losses/clipfrac", "clipped share"),), percent=True),
    Panel("Entropy (per token)", (("losses/entropy", "entropy"),)),
    Panel(
        "Reply log-probs (per step)",
        (("charts/thought_logprob", "thought tokens"), ("charts/action_logprob", "action tokens")),
    ),
)

_STYLES = ("-", "--", ":", "-.")


def curve(
    panel: Panel,
    runs: Sequence[Run],
    reference: tuple[str, float] | None = None,
) -> bytes | None:
    """The panel's curves for every run as PNG bytes, or None if no run logged any of them.

    One colour per run (per metric for one run) and one line style per metric;
    ``reference`` draws a labelled horizontal line (the paper's figure, say).
    """
    lines = [
        (run_index, series_index, label, run.series(key))
        for run_index, run in enumerate(runs)
        for series_index, (key, label) in enumerate(panel.series)
    ]
    lines = [line for line in lines if line[3][0]]
    if not lines:
        return None
    figure = Figure(figsize=(5.2, 3.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    for run_index, series_index, label, (updates, values) in lines:
        steps = [update * runs[run_index].steps_per_update for update in updates]
        if panel.percent:
            values = [100 * value for value in values]
        name = label if len(runs) == 1 else runs[run_index].name
        if len(runs) > 1 and len(panel.series) > 1:
            name = f"{name}: {label}"
        few = len(updates) < 40
        colour = run_index if len(runs) > 1 else series_index  # one run: a colour a metric
        axes.plot(
            steps,
            values,
            _STYLES[series_index % len(_STYLES)],
            color=f"C{colour % 10}",
            marker="o" if few else None,
            markersize=3,
            label=name,
        )
    if reference is not None:
        label, value = reference
        axes.axhline(
            100 * value if panel.percent else value,
            color="grey",
            linestyle=":",
            linewidth=1,
            label=label,
        )
    axes.set_title(panel.title, fontsize=10)
    axes.set_xlabel("environment steps", fontsize=9)  # the paper's axis
    per_update = {run.steps_per_update for run in runs}
    last_step = max(max(updates) * runs[i].steps_per_update for i, _, _, (updates, _) in lines)
    axes.set_xlim(0, 1.02 * last_step or 1)
    if len(per_update) == 1 and (per := per_update.pop()) > 0:  # updates along the top
        top = axes.secondary_xaxis("top", functions=(lambda s: s / per, lambda u: u * per))
        top.set_xlabel("PPO update", fontsize=8)
        top.xaxis.set_major_locator(MaxNLocator(integer=True))
        top.tick_params(labelsize=7)
    if panel.full_scale:
        axes.set_ylim(-3, 103)
    if panel.percent:
        axes.set_ylabel("%", fontsize=9)
    axes.tick_params(labelsize=8)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    return png(figure)


def png(figure: Figure) -> bytes:
    """A figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
