"""Grids of training runs: specs, the local and Ray backends, and their tables and curves."""

from rlvlm.experiment.runner import estimate_seconds, run_cells, sft_stage, status, statuses
from rlvlm.experiment.spec import Cell, Experiment, load_experiment, spec_names
from rlvlm.experiment.table import aggregate, markdown, write_results

__all__ = [
    "Cell",
    "Experiment",
    "aggregate",
    "estimate_seconds",
    "load_experiment",
    "markdown",
    "run_cells",
    "sft_stage",
    "spec_names",
    "status",
    "statuses",
    "write_results",
]
