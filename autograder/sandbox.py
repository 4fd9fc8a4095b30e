"""A student process that holds a submission's code and runs ops on it, with time and memory limits."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from simclr_helpers.checks import StudentCodeError

from .host import Channel, ChannelClosed, GraderError, SandboxHost
from .integrity import CodeSnapshot

__all__ = ["GraderError", "Limits", "Sandbox", "SandboxHost"]


@dataclass(frozen=True)
class Limits:
    """How a student process runs: ``sandbox`` ("bwrap", or "none" for trusted code only), the wall-clock limit
    of one check and of defining the answer cells, the interpreter's own start-up limit (not the student's
    time), the memory (data segment) and CPU-time limits, and its threads. ``isolate``: each check in a fresh
    student process that runs only the cells' definitions, and student calls that change the modules they are
    given in a child whose modules the grader reads itself (False only to measure what that protection does:
    then the cells run whole, once per submission, and every fact comes from the student's process)."""
    check_timeout_s: float = 60.0
    startup_timeout_s: float = 60.0
    boot_timeout_s: float = 300.0
    memory_mb: int = 4096
    cpu_s: int = 3600
    threads: int = 1
    sandbox: str = "bwrap"
    isolate: bool = True


class Sandbox:
    """Runs ``simclr_helpers.checks`` ops on the student's cells in a student process forked by a SandboxHost.

    ``cells`` are (label, source) pairs executed in order; ``inject`` is code run after them (the checker
    replaces a component with the reference's to grade another one alone). A cell that hangs or kills the
    process at definition time is left out and the rest are defined again. Set ``deadline`` (a
    ``time.monotonic()`` value) before each check: every op waits at most until then, and after it every op
    fails at once, so a hanging function costs one check and one time limit. Without a deadline, every op
    gets ``check_timeout_s`` of its own. Pass the submission's ``host`` to share its sandbox (and its
    start-up); without one the Sandbox makes its own from ``code``, ``data_dirs`` and ``gpu``.
    """

    def __init__(self, cells: list[tuple[str, str]], limits: Limits, inject: str | None = None,
                 code: CodeSnapshot | None = None, data_dirs: tuple[str, ...] = (), gpu: bool = False,
                 host: SandboxHost | None = None):
        self.cells, self.limits, self.inject = list(cells), limits, inject
        self.cell_errors: dict[str, str] = {}
        self.left_out: dict[str, list[str]] = {}
        self.deadline: float | None = None
        self._own_host = host is None
        self.host = host or SandboxHost(limits, code, data_dirs, gpu)
        self._pid: int | None = None
        self._channel: Channel | None = None

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._kill()
        if self._own_host:
            self.host.close()

    # --- process lifecycle -----------------------------------------------------------------------------

    def _kill(self) -> int | None:
        """Stop the student process; its exit status (a code, or minus the signal), if the sandbox knows it."""
        if self._pid is None:
            return None
        status = self.host.kill(self._pid)
        self._channel.close()
        self._pid = self._channel = None
        return status

    def _start(self) -> None:
        """Fork a student process and define the cells; leave out any cell that hangs or kills the process."""
        while True:
            self._pid, self._channel = self.host.fork(self.limits.memory_mb, self.limits.cpu_s, self.limits.threads,
                                                     self.limits.isolate)
            self._channel.send({"cells": self.cells, "inject": self.inject})
            deadline = time.monotonic() + self.limits.startup_timeout_s
            running = None
            try:
                while True:
                    message = self._receive(deadline, "defining your functions", self.limits.startup_timeout_s)
                    if "running" in message:
                        running = message["running"]
                    else:
                        self.cell_errors.update(message["cell_errors"])
                        self.left_out.update(message.get("left_out", {}))
                        return
            except StudentCodeError as error:
                self._kill()
                if running is None:
                    raise
                self.cell_errors[running] = str(error)
                self.cells = [(label, source) for label, source in self.cells if label != running]

    # --- messages --------------------------------------------------------------------------------------

    def _receive(self, deadline: float, doing: str, limit_s: float) -> Any:
        if not self._channel.poll(deadline - time.monotonic()):
            self._kill()
            raise StudentCodeError(f"time limit: {doing} did not finish within {limit_s:.0f} s; "
                                   "is there an endless loop?")
        try:
            message = self._channel.receive()
        except ChannelClosed:
            code = self._kill()
            reason = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
            raise StudentCodeError(f"the process running your code {reason} while {doing} "
                                   "(sys.exit, os._exit, a crash, or the memory limit)") from None
        except Exception as error:  # noqa: BLE001 - whatever the bytes were, they were not plain data
            self._kill()
            raise StudentCodeError(f"the student process sent something that is not plain data ({error})") from None
        if not isinstance(message, dict):
            self._kill()
            raise StudentCodeError("the student process sent something that is not a message")
        return message

    def ensure_started(self) -> None:
        """Start the student process now (if it is not running), so that its start-up does not count against a
        check; raises GraderError if the sandbox itself cannot start."""
        if self._pid is None:
            self._start()

    def run(self, op: str, **kwargs) -> Any:
        """Run one op (see ``simclr_helpers.checks.OPS``) on the student's code; plain data back."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise StudentCodeError("time limit: this check already used its time")
        self.ensure_started()
        deadline = self.deadline if self.deadline is not None else time.monotonic() + self.limits.check_timeout_s
        self._channel.send({"op": op, "kwargs": kwargs})
        reply = self._receive(deadline, f"running {op}", self.limits.check_timeout_s)
        if not reply.get("ok"):
            raise StudentCodeError(str(reply.get("error")))
        return reply["result"]
