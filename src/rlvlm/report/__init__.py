"""Run reports: training curves, the evaluation beside the paper, and episode replays."""

from rlvlm.report.page import default_out, write_report
from rlvlm.report.runs import Run, load_run

__all__ = ["Run", "default_out", "load_run", "write_report"]
