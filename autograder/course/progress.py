"""What the grade command shows while a batch's checks run: on a terminal a progress bar (submissions done/total,
rate, time left); in a log (not a terminal) one plain line per submission, which also says how many are done."""
from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

MODES = ("auto", "bar", "lines")


class BatchProgress:
    """The progress of ``total`` submissions. ``mode`` "auto" draws the bar when ``err`` is a terminal, "bar" and
    "lines" force one or the other. With the bar, a submission's line is still written to ``out`` when ``out`` is
    not a terminal (a log), and on a terminal only for a submission that was not graded."""

    def __init__(self, total: int, mode: str = "auto", out: TextIO | None = None, err: TextIO | None = None):
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r}: use one of {', '.join(MODES)}")
        self.total, self.done = total, 0
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        bar = total > 0 and (mode == "bar" or (mode == "auto" and _is_terminal(self.err)))
        self.lines_for_all = not bar or not _is_terminal(self.out)
        self.start = time.monotonic()
        self.bar = tqdm(total=total, desc="grading", unit="submission", file=self.err, dynamic_ncols=True,
                        smoothing=0, mininterval=0) if bar else None

    def __enter__(self) -> BatchProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def advance(self, student: str, outcome: str, seconds: float, graded: bool = True) -> None:
        """One more submission done: ``outcome`` is its checks' result ("12/12 checks passed") or why it was not
        graded."""
        self.done += 1
        line = f"   [{self.done}/{self.total}{self._left()}] {student}: {outcome} ({seconds:.1f} s)"
        if self.bar is None:
            print(line, file=self.out, flush=True)
            return
        if self.lines_for_all or not graded:
            self.bar.write(line, file=self.out)
        self.bar.update(1)

    def _left(self) -> str:
        """", 03:12 left": the time the rest should take at the mean rate so far (nothing once all are done)."""
        if self.done >= self.total:
            return ""
        elapsed = time.monotonic() - self.start
        return f", {tqdm.format_interval(elapsed / self.done * (self.total - self.done))} left"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return False
