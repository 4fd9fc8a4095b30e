"""One grading sandbox per submission: a zygote that imports torch once and forks a student process per check.

Starting Python and importing torch costs seconds; a submission needs a student process per check (and the
training run, and a fresh one after every crash). The zygote pays that start-up once, under its own time limit
(never the student's), and every student process is a fork of it (milliseconds) in namespaces of its own
(``worker.py``). Everything runs inside one bubblewrap sandbox (``isolation.py``) in a cgroup of its own where the
machine allows one (``cgroups.py``), which dies, with every process in it, when the host is closed.
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from simclr_helpers import wire

from autograder.boundary import isolation
from autograder.boundary.cgroups import SandboxCgroup
from autograder.boundary.integrity import CodeSnapshot, grader_code

CONTROL_MESSAGE_BYTES = 2**16
FORK_TIMEOUT_S = 60.0   # a booted zygote forks in milliseconds; this only waits out an overloaded machine
LOG_BYTES = 2000


class GraderError(RuntimeError):
    """Grading could not happen for a reason that is not the student's (an overloaded machine, no sandbox)."""


class SandboxHost:
    """The zygote process of one submission, in its own sandbox (``limits.sandbox``), started on first use."""

    def __init__(self, limits, code: CodeSnapshot | None = None, data_dirs: tuple[str, ...] = (), gpu: bool = False):
        self.limits, self.data_dirs, self.gpu = limits, data_dirs, gpu
        self.boot_s: float | None = None
        self.boots = 0
        self._folder = Path(tempfile.mkdtemp(prefix="simclr-sandbox-"))
        self._code = self._folder / "code"
        (code or grader_code()).write_student_code(self._code)
        self._process: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._cgroup: SandboxCgroup | None = None
        self.log_path = self._folder / "output.log"

    def __enter__(self) -> "SandboxHost":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def cgroup(self) -> SandboxCgroup | None:
        """The sandbox's cgroup once started, where one could be made."""
        return self._cgroup

    @property
    def sandboxed(self) -> bool:
        return self.limits.sandbox != "none"

    def _command(self, control_fd: int) -> tuple[list[str], str]:
        code = Path(isolation.CODE_DIR) if self.sandboxed else self._code
        argv = [sys.executable, "-S", str(code / "worker.py"), str(control_fd), *isolation.site_dirs()]
        if not self.sandboxed:
            return argv, str(self._code)
        command = isolation.bwrap_command(self._code, argv, self.data_dirs, self.gpu, self.limits.scratch_mb,
                                          empty=self._folder / "empty")
        return command, isolation.SCRATCH

    def _in_child(self) -> None:
        """Run in the sandbox's first process before it execs: its file-size ceiling, its cgroup."""
        if self.limits.output_mb > 0:
            size = self.limits.output_mb * 2**20
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        if self._cgroup is not None:
            self._cgroup.join()

    def start(self) -> None:
        """Start the zygote and wait for its imports; GraderError if that fails (no student code has run)."""
        self.stop()
        if self.sandboxed and self._cgroup is None:
            memory = self.limits.memory_mb + self.limits.zygote_mb if self.limits.memory_mb > 0 else 0
            self._cgroup = SandboxCgroup.create(memory, self.limits.max_processes, cpus=self.limits.threads)
        ours, theirs = socket.socketpair()
        command, home = self._command(theirs.fileno())
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home,
               "LANG": "C.UTF-8", "OMP_NUM_THREADS": str(self.limits.threads), "MPLBACKEND": "Agg",
               "PYTHONDONTWRITEBYTECODE": "1", "CUDA_CACHE_PATH": f"{home}/.nv"}
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(command, cwd=self._code, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=log, pass_fds=(theirs.fileno(),), start_new_session=True,
                                             preexec_fn=self._in_child)
        theirs.close()
        self._control = ours
        start = time.monotonic()
        try:
            self._expect("booted", self.limits.boot_timeout_s, "starting Python and importing torch")
        except GraderError as error:
            log = self.log_path.read_bytes()[-LOG_BYTES:].decode(errors="replace")
            self.stop()
            raise GraderError(f"{error}. No student code had run: the machine is overloaded or the installation is "
                              f"broken; grade again (fewer --workers). Its output: {log!r}") from None
        self.boot_s = time.monotonic() - start
        self.boots += 1

    def _expect(self, key: str, timeout_s: float, doing: str) -> Any:
        try:
            reply = wire.receive(self._control, CONTROL_MESSAGE_BYTES, time.monotonic() + timeout_s)
        except wire.MessageTimeout:
            raise GraderError(f"the sandbox did not answer within {timeout_s:.0f} s while {doing}") from None
        except (wire.ChannelClosed, wire.NotPlainData, OSError) as error:
            code = self._process.poll() if self._process else None
            raise GraderError(f"the sandbox stopped while {doing} (exit code {code}; {type(error).__name__})") from None
        if not isinstance(reply, dict) or key not in reply:
            raise GraderError(f"the sandbox sent an unexpected reply while {doing}")
        return reply[key]

    def fork(self, limits: dict) -> tuple[int, socket.socket]:
        """A fresh student process in namespaces of its own, with these limits: its pid (as the zygote knows it)
        and its socket."""
        for attempt in range(2):  # a zygote that died is started again once
            if self._process is None or self._process.poll() is not None:
                self.start()
            try:
                wire.send(self._control, {"fork": {**limits, "namespaces": self.sandboxed}})
                pid = self._expect("pid", FORK_TIMEOUT_S, "forking a student process")
                fds = wire.receive_fds(self._control, 1)
                if len(fds) != 1:
                    raise GraderError("the sandbox did not hand over a student process")
                return int(pid), socket.socket(fileno=fds[0])
            except (GraderError, OSError):
                if attempt:
                    raise
                self.stop()
        raise AssertionError("unreachable")

    def kill(self, pid: int, exited: bool = False) -> int | None:
        """End a student process's check (every process in its namespaces goes with it); its exit status (a code,
        or minus the signal) if it ended by itself (``exited``: it is ending, give it a moment), else None."""
        if self._process is None or self._process.poll() is not None:
            return None
        try:
            wire.send(self._control, {"kill": pid, "exited": exited})
            status = self._expect("status", 30, "stopping a student process")
        except (GraderError, OSError):
            self.stop()
            return None
        return status if isinstance(status, int) else None

    def stop(self) -> None:
        """Kill the sandbox: every process in it dies with it (its PID namespace)."""
        if self._process is not None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._process.wait()
            self._process = None
        if self._control is not None:
            self._control.close()
            self._control = None

    def close(self) -> None:
        self.stop()
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None
        shutil.rmtree(self._folder, ignore_errors=True)
