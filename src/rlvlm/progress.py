"""Progress of long stages: tqdm's bar on a terminal; elsewhere (a CI log, ``nohup``, a batch
job), where a redrawn bar would pile up as one endless line, a plain line now and then."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable
from typing import Any

from tqdm import std
from tqdm.auto import tqdm

#: The least time in seconds between two plain progress lines (a line waits for a step).
LINE_INTERVAL = 60.0
_LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit}s, {elapsed} elapsed, ETA {remaining}{postfix}"


class _LogLines(std.tqdm):
    """tqdm for a log: each refresh of the bar that shows news (a step or a new postfix) is one
    plain line on stderr, and tqdm's own redrawing ("\r" and padding) goes nowhere. Nothing is
    printed before the first step, so that an error at the start stays the only line."""

    def __init__(self, *args, **kwargs):
        self._last_state = None
        kwargs.setdefault("unit", "step")
        super().__init__(
            *args,
            file=io.StringIO(),
            mininterval=LINE_INTERVAL,
            bar_format=_LINE_FORMAT,
            **kwargs,
        )

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        # tqdm also redraws without news (its monitor thread, closing): only the clock moved.
        line, state = str(self) if msg is None else msg, (self.n, self.postfix)
        if self.n and line and state != self._last_state:
            print(line, file=sys.stderr, flush=True)
            self._last_state = state
        return True


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` where stderr is a terminal; where it is not, the same
    progress (step, ETA, the postfix such as the success rate) as a plain line at most every
    ``LINE_INTERVAL`` seconds and at the end. ``enabled=False``: silent."""
    if not enabled or sys.stderr.isatty():
        return tqdm(iterable, disable=not enabled, dynamic_ncols=True, **kwargs)
    return _LogLines(iterable, **kwargs)
