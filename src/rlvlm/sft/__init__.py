"""Supervised fine-tuning: demonstration data from the games' experts."""

from rlvlm.sft.data import (
    Demonstration,
    DemonstrationSummary,
    demonstration_seeds,
    load_demonstrations,
    write_demonstrations,
)

__all__ = [
    "Demonstration",
    "DemonstrationSummary",
    "demonstration_seeds",
    "load_demonstrations",
    "write_demonstrations",
]
