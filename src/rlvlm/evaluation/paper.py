"""The success rates that Zhai et al. (NeurIPS 2024, Table 2) report, to compare against.

Rates are fractions; None where the paper (or later work) gives no figure. ALFWorld's is
the average over task types weighted by how often each occurs.
"""

from __future__ import annotations

from typing import Any

SOURCE = "Zhai et al. 2024, Table 2"

PAPER_RESULTS: dict[str, dict[str, float | None]] = {
    "paper (LLaVA-1.6-7B + PPO)": {
        "numberline": 0.894,
        "ezpoints": 0.500,
        "points24": 0.023,
        "blackjack": 0.402,
        "alfworld": 0.217,
    },
    "paper without CoT": {
        "numberline": 0.269,
        "ezpoints": 0.299,
        "points24": 0.0,
        "blackjack": 0.404,
        "alfworld": 0.163,
    },
    "LLaVA SFT only": {
        "numberline": 0.248,
        "ezpoints": 0.230,
        "points24": 0.026,
        "blackjack": 0.231,
        "alfworld": 0.177,
    },
    "GPT-4V": {
        "numberline": 0.655,
        "ezpoints": 0.105,
        "points24": 0.0,
        "blackjack": 0.255,
        "alfworld": 0.194,
    },
    "Gemini": {
        "numberline": 0.825,
        "ezpoints": 0.020,
        "points24": 0.0,
        "blackjack": 0.300,
        "alfworld": 0.135,
    },
    "CNN + RL": {
        "numberline": 0.871,
        "ezpoints": 0.0,
        "points24": 0.0,
        "blackjack": 0.388,
        "alfworld": 0.0,
    },
    "later work (Qwen-VL, group-relative RL)": {
        "numberline": 1.0,
        "ezpoints": 1.0,
        "points24": 0.175,
        "blackjack": None,
        "alfworld": None,
    },
}


def paper_rows(game: str) -> list[tuple[str, float]]:
    """The systems with a figure for ``game`` and their success rates.

    >>> paper_rows("points24")[0]
    ('paper (LLaVA-1.6-7B + PPO)', 0.023)
    """
    return [
        (system, rates[game])
        for system, rates in PAPER_RESULTS.items()
        if rates.get(game) is not None
    ]


def versus(rate: float, ci95: tuple[float, float] | list[float]) -> str:
    """Where a paper rate lies against a measured 95 % interval, in a word.

    >>> versus(0.894, (0.80, 0.90)), versus(0.5, (0.6, 0.7)), versus(0.9, (0.6, 0.7))
    ('within', 'below', 'above')
    """
    low, high = ci95
    return "below" if rate < low else "above" if rate > high else "within"


def comparison_table(result: dict[str, Any]) -> str:
    """The result beside the paper's rows for its game, as lines of text.

    The last column says whether each paper figure lies within this result's 95 % interval.
    """
    game, (low, high) = result["game"], result["success_ci95"]
    rows = paper_rows(game)
    width = max(len(system) for system, _ in [*rows, (result["policy"], 0)]) + 2
    lines = [
        f"{game} success beside the paper ({SOURCE}):",
        f"  {'system':<{width}}{'success':>8}   paper figure vs. this 95% CI",
        f"  {result['policy']:<{width}}{result['success_rate']:>8.1%}   "
        f"this result: 95% CI [{low:.1%}, {high:.1%}]",
    ]
    lines += [
        f"  {system:<{width}}{rate:>8.1%}   {versus(rate, (low, high))}" for system, rate in rows
    ]
    if not rows:
        lines.append("  (the paper reports no figure for this game)")
    return "\n".join(lines)
