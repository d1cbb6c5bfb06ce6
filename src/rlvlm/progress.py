"""Progress of long stages: tqdm's bar on a terminal; elsewhere (a CI log, ``nohup``, a batch
job), where a redrawn bar would pile up as one endless line, a plain line now and then."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm.auto import tqdm

#: Seconds between two plain progress lines at most (a line may wait for the next step).
LINE_INTERVAL = 60.0
_LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit}s, {elapsed} elapsed, ETA {remaining}{postfix}"


class _Lines(io.TextIOBase):
    """A file for tqdm that writes each refresh of its bar as one plain line."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.pending = self.last = ""

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()  # tqdm redraws with "\r" and pads with spaces
        if line:
            self.pending = line
        return len(text)

    def flush(self) -> None:
        if self.pending and self.pending != self.last:  # closing redraws the last state
            self.stream.write(self.pending + "\n")
            self.stream.flush()
            self.last = self.pending
        self.pending = ""


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` where stderr is a terminal; where it is not, the same
    progress (step, ETA, the postfix such as the success rate) as a line at the start, at
    most every ``LINE_INTERVAL`` seconds and at the end. ``enabled=False``: silent."""
    if not enabled or sys.stderr.isatty():
        return tqdm(iterable, disable=not enabled, dynamic_ncols=True, **kwargs)
    kwargs.setdefault("unit", "step")
    return tqdm(
        iterable,
        file=_Lines(sys.stderr),
        mininterval=LINE_INTERVAL,
        bar_format=_LINE_FORMAT,
        **kwargs,
    )
