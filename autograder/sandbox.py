"""A separate process that holds a submission's code and runs ops on it, with time and memory limits."""
from __future__ import annotations

import io
import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch
from simclr_helpers.checks import StudentCodeError

from . import isolation
from .integrity import CodeSnapshot, grader_code

WORKER = Path(__file__).with_name("worker.py")
MAX_MESSAGE = 256 * 2**20


class GraderError(RuntimeError):
    """Grading could not happen for a reason that is not the student's (an overloaded machine, no sandbox)."""


@dataclass(frozen=True)
class Limits:
    """How a student process runs: ``sandbox`` ("bwrap", or "none" for trusted code only), the wall-clock limit
    of one check and of defining the answer cells, the interpreter's own start-up limit (not the student's
    time), the memory (data segment) and CPU-time limits, and its threads."""
    check_timeout_s: float = 60.0
    startup_timeout_s: float = 60.0
    boot_timeout_s: float = 300.0
    memory_mb: int = 4096
    cpu_s: int = 3600
    threads: int = 1
    sandbox: str = "bwrap"


class Sandbox:
    """Runs ``simclr_helpers.checks`` ops on the student's cells in a ``python -S`` child process.

    ``cells`` are (label, source) pairs executed in order; ``inject`` is code run after them (the checker
    replaces a component with the reference's to grade another one alone). A cell that hangs or kills the
    process at definition time is left out and the rest are defined again. Set ``deadline`` (a
    ``time.monotonic()`` value) before each check: every op waits at most until then, and after it every op
    fails at once, so a hanging function costs one check and one time limit. Without a deadline, every op
    gets ``check_timeout_s`` of its own.
    """

    def __init__(self, cells: list[tuple[str, str]], limits: Limits, inject: str | None = None,
                 code: CodeSnapshot | None = None, data_dirs: tuple[str, ...] = (), gpu: bool = False):
        self.cells, self.limits, self.inject = list(cells), limits, inject
        self.data_dirs, self.gpu = data_dirs, gpu
        self.cell_errors: dict[str, str] = {}
        self.deadline: float | None = None
        self._process: subprocess.Popen | None = None
        self._folder = Path(tempfile.mkdtemp(prefix="simclr-sandbox-"))
        self._code = self._folder / "code"
        (code or grader_code()).write_student_code(self._code)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._kill()
        shutil.rmtree(self._folder, ignore_errors=True)

    # --- process lifecycle -----------------------------------------------------------------------------

    def _command(self, to_child_r: int, from_child_w: int) -> tuple[list[str], Path, str]:
        """The student process's command line, its working folder on this side, and its $HOME."""
        sandboxed = self.limits.sandbox != "none"
        code = Path(isolation.CODE_DIR) if sandboxed else self._code
        argv = [sys.executable, "-S", str(code / "worker.py"), str(to_child_r), str(from_child_w),
                str(self.limits.memory_mb), str(self.limits.cpu_s), str(self.limits.threads), *site.getsitepackages()]
        if not sandboxed:
            return argv, self._code, str(self._code)
        return isolation.bwrap_command(self._code, argv, self.data_dirs, self.gpu), self._folder, "/tmp/home"

    def _spawn(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        command, cwd, home = self._command(to_child_r, from_child_w)
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": "/tmp" if home == "/tmp/home" else home,
               "LANG": "C.UTF-8", "OMP_NUM_THREADS": str(self.limits.threads), "MPLBACKEND": "Agg",
               "PYTHONDONTWRITEBYTECODE": "1"}
        log = open(self._folder / "output.log", "ab")
        self._process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, pass_fds=(to_child_r, from_child_w), start_new_session=True)
        log.close()
        os.close(to_child_r)
        os.close(from_child_w)
        self._to_child = Connection(to_child_w, readable=False)
        self._from_child = Connection(from_child_r, writable=False)

    def _kill(self) -> None:
        if self._process is None:
            return
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._process.wait()
        self._to_child.close()
        self._from_child.close()
        self._process = None

    def _boot(self) -> None:
        """Wait for the interpreter to start (torch imported, no student code yet): its own limit, not the student's."""
        deadline = time.monotonic() + self.limits.boot_timeout_s
        try:
            self._receive(deadline, "starting Python and importing torch", self.limits.boot_timeout_s)
        except StudentCodeError as error:
            log = (self._folder / "output.log").read_text(errors="replace")[-500:]
            raise GraderError(f"the grader's student process did not start: {error}. No student code had run: the "
                              f"machine is overloaded or the installation is broken; grade again (fewer --workers). "
                              f"Its output: {log!r}") from None

    def _start(self) -> None:
        """Start the child and define the cells; leave out any cell that hangs or kills the process."""
        while True:
            self._spawn()
            self._boot()
            self._send({"cells": self.cells, "inject": self.inject})
            deadline = time.monotonic() + self.limits.startup_timeout_s
            running = None
            try:
                while True:
                    message = self._receive(deadline, "defining your functions", self.limits.startup_timeout_s)
                    if "running" in message:
                        running = message["running"]
                    else:
                        self.cell_errors.update(message["cell_errors"])
                        return
            except StudentCodeError as error:
                self._kill()
                if running is None:
                    raise
                self.cell_errors[running] = str(error)
                self.cells = [(label, source) for label, source in self.cells if label != running]

    # --- messages --------------------------------------------------------------------------------------

    def _send(self, message: dict) -> None:
        buffer = io.BytesIO()
        torch.save(message, buffer)
        try:
            self._to_child.send_bytes(buffer.getvalue())
        except (BrokenPipeError, OSError):
            pass  # the child died; _receive reports how

    def _receive(self, deadline: float, doing: str, limit_s: float) -> Any:
        remaining = deadline - time.monotonic()
        try:
            ready = remaining > 0 and self._from_child.poll(remaining)
            if not ready:
                self._kill()
                raise StudentCodeError(f"time limit: {doing} did not finish within {limit_s:.0f} s; "
                                       "is there an endless loop?")
            data = self._from_child.recv_bytes(MAX_MESSAGE)
        except (EOFError, OSError):
            code = self._process.wait() if self._process else None
            self._kill()
            if code is not None and code > 128 and self.limits.sandbox != "none":
                code = 128 - code  # bwrap exits with 128 + the signal that killed its child
            reason = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
            raise StudentCodeError(f"the process running your code {reason} while {doing} "
                                   "(sys.exit, os._exit, a crash, or the memory limit)") from None
        try:
            return torch.load(io.BytesIO(data), weights_only=True)
        except Exception as error:
            self._kill()
            raise StudentCodeError(f"the student process sent something that is not plain data ({error})") from None

    def ensure_started(self) -> None:
        """Start the child now (if it is not running), so that its start-up does not count against a check."""
        if self._process is None:
            self._start()

    def run(self, op: str, **kwargs) -> Any:
        """Run one op (see ``simclr_helpers.checks.OPS``) on the student's code; plain data back."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise StudentCodeError("time limit: this check already used its time")
        self.ensure_started()
        deadline = self.deadline if self.deadline is not None else time.monotonic() + self.limits.check_timeout_s
        self._send({"op": op, "kwargs": kwargs})
        reply = self._receive(deadline, f"running {op}", self.limits.check_timeout_s)
        if not isinstance(reply, dict) or not reply.get("ok"):
            raise StudentCodeError(str(reply.get("error") if isinstance(reply, dict) else reply))
        return reply["result"]
