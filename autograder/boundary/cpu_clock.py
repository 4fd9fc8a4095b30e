"""A check's time limit, spent in the student's own CPU time, so that a busy machine never changes a grade.

Where the sandbox's cgroup counts CPU time, a check may use ``limit_s`` of it (all of its processes together); the
wall clock is only a backstop, ``overload_factor`` times longer, and only the time spent waiting for the student
counts against it (never the grader's own arithmetic). When the backstop passes before the CPU limit, the threads'
run-queue delay tells why: a thread mostly waiting for a CPU means the machine was overloaded (``Overloaded``, the
submission is graded again later, never failed); mostly asleep means the student's code waits for something that
never comes (a time limit, as for an endless loop). Without a cgroup that counts CPU time, the limit is wall time.
"""
from __future__ import annotations

import time
from pathlib import Path

from autograder.boundary.cgroups import SandboxCgroup

BACKSTOP_SLACK_S = 5.0


class CpuLimitReached(Exception):
    """The check's processes used their CPU time."""


class Overloaded(Exception):
    """The backstop passed while the student's processes were mostly waiting for a CPU."""


def _run_delay_s(tid: int) -> float | None:
    """Seconds thread ``tid`` has spent runnable but waiting for a CPU (its schedstat), None if unknown."""
    try:
        return int(Path(f"/proc/{tid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class CheckClock:
    """The time of one check (or of defining the cells): CPU time in ``cgroup``, else wall time."""

    def __init__(self, limit_s: float, cgroup: SandboxCgroup | None, overload_factor: float):
        self.limit_s = limit_s
        self.cgroup = cgroup if cgroup is not None and cgroup.cpu_seconds() is not None else None
        self.backstop_s = limit_s * overload_factor + BACKSTOP_SLACK_S if self.cgroup else limit_s
        self._cpu_at_start = self.cgroup.cpu_seconds() if self.cgroup else 0.0
        self.waited_s = 0.0
        self._delays: dict[int, tuple[float, float]] = {}   # thread -> (run delay when first seen, last seen)

    @property
    def counts_cpu(self) -> bool:
        return self.cgroup is not None

    def cpu_used_s(self) -> float:
        """CPU seconds the check's processes used so far (0 where none is counted)."""
        return (self.cgroup.cpu_seconds() or 0.0) - self._cpu_at_start if self.cgroup else 0.0

    def spent(self) -> bool:
        """Whether the check has used its time (CPU, or the backstop's wall time)."""
        return self.waited_s >= self.backstop_s or (self.counts_cpu and self.cpu_used_s() >= self.limit_s)

    def remaining_wait_s(self) -> float:
        return max(0.0, self.backstop_s - self.waited_s)

    def watch(self) -> None:
        """Called while waiting for the student: raise CpuLimitReached at the CPU limit; note the threads' delays."""
        if not self.counts_cpu:
            return
        for tid in self.cgroup.thread_ids():
            delay = _run_delay_s(tid)
            if delay is not None:
                first, _ = self._delays.get(tid, (delay, delay))
                self._delays[tid] = (first, delay)
        if self.cpu_used_s() >= self.limit_s:
            raise CpuLimitReached

    def waiting_for_cpu_s(self) -> float:
        """The most seconds one of the sandbox's threads spent runnable but not running, as far as seen. (One thread:
        many threads that wake together wait for each other, which is the student's doing, not the machine's.)"""
        return max((last - first for first, last in self._delays.values()), default=0.0)

    def overloaded(self) -> bool:
        """At the backstop: whether a thread of the student's spent more of it waiting for a CPU than the student's
        processes spent asleep."""
        if not self.counts_cpu:
            return False
        waiting = self.waiting_for_cpu_s()
        asleep = self.waited_s - self.cpu_used_s() - waiting
        return waiting > asleep


class Stopwatch:
    """Adds the wall time of one wait to a clock's ``waited_s``."""

    def __init__(self, clock: CheckClock):
        self.clock = clock

    def __enter__(self) -> "Stopwatch":
        self._start = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.clock.waited_s += time.monotonic() - self._start
