"""Progress of the lab's long runs: a bar with the time left while a run goes, one plain line once it is done.

In Jupyter the bar is a plain-text output that is replaced in place (a display with an id), and at the end it is
replaced by a one-line summary, so the saved notebook, the formgrader and the feedback show that line only: no
widget, no bar frozen at "0%". Elsewhere (a terminal, a script) the bar is tqdm's text bar on stderr, left
behind by nothing, and the summary is printed.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator

from tqdm.std import tqdm as text_tqdm


def in_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (where outputs can be replaced in place)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def duration(seconds: float) -> str:
    """``seconds`` as "42 s" or "3 min 05 s"."""
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


class Progress:
    """A progress bar over ``total`` steps, named ``desc``, with the time left (ETA); silent if not ``enabled``.

    Use it as a context manager, count steps with ``update`` or by iterating ``track(iterable)``, and end it with
    ``close(summary)``: the summary line replaces the bar (by default "desc: n steps in t s").
    """

    def __init__(self, desc: str, total: int, enabled: bool = True, min_interval: float = 0.5) -> None:
        self.desc, self.total, self.enabled, self.min_interval = desc, max(int(total), 1), enabled, min_interval
        self.n, self.note, self.start = 0, "", time.perf_counter()
        self.closed = False
        self._handle: Any = None      # the Jupyter display that is replaced in place
        self._text_bar: Any = None    # tqdm's bar outside Jupyter
        self._shown_at = float("-inf")

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is None:
            self.close()
        else:
            self.close(f"{self.desc}: stopped after {self.n}/{self.total} steps ({self.elapsed_text()})"
                       if self.n else "")

    @property
    def elapsed(self) -> float:
        """Seconds since the bar was made."""
        return time.perf_counter() - self.start

    def elapsed_text(self) -> str:
        """``elapsed`` as "42 s" or "3 min 05 s"."""
        return duration(self.elapsed)

    def line(self) -> str:
        """The bar as one line of text: percentage, bar, steps, elapsed<left, rate, and the latest note."""
        meter = text_tqdm.format_meter(min(self.n, self.total), self.total, self.elapsed, ncols=100,
                                       prefix=self.desc, unit="step")
        return f"{meter}  {self.note}" if self.note else meter

    def update(self, n: int = 1, note: str | None = None) -> None:
        """Count ``n`` more steps (and set the note shown after the bar); redrawn at most every min_interval s."""
        self.n += n
        if note is not None:
            self.note = note
        if not self.enabled or self.closed:
            return
        if in_kernel():
            now = time.perf_counter()
            if self._handle is None or now - self._shown_at >= self.min_interval or self.n >= self.total:
                self._show(self.line())
                self._shown_at = now
        else:
            if self._text_bar is None:
                self._text_bar = text_tqdm(total=self.total, desc=self.desc, leave=False, file=sys.stderr,
                                           unit="step", mininterval=self.min_interval)
            self._text_bar.update(n)
            if note is not None:
                self._text_bar.set_postfix_str(note, refresh=False)

    def _show(self, text: str) -> None:
        from IPython.display import display
        content = {"text/plain": text}
        if self._handle is None:
            self._handle = display(content, raw=True, display_id=True)
        else:
            self._handle.update(content, raw=True)

    def track(self, iterable: Iterable) -> "Tracked":
        """``iterable``, counting one step of this bar per item (it keeps ``len`` and the iterable's attributes)."""
        return Tracked(iterable, self)

    def close(self, summary: str | None = None) -> None:
        """End the bar: ``summary`` (default: "desc: n steps in t s") replaces it; "" leaves nothing."""
        if self.closed:
            return
        self.closed = True
        if not self.enabled:
            return
        summary = f"{self.desc}: {self.n} steps in {self.elapsed_text()}" if summary is None else summary
        if self._text_bar is not None:
            self._text_bar.close()
        if self._handle is not None:
            self._show(summary)
        elif summary and in_kernel():
            self._show(summary)
        elif summary:
            print(summary, flush=True)


class Tracked:
    """An iterable that counts one step of a ``Progress`` per item; ``len`` and attributes are the iterable's."""

    def __init__(self, iterable: Iterable, progress: Progress) -> None:
        self.iterable, self.progress = iterable, progress

    def __len__(self) -> int:
        return len(self.iterable)   # type: ignore[arg-type]

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.progress.update()

    def __getattr__(self, name: str) -> Any:
        if name in ("iterable", "progress"):   # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.iterable, name)
