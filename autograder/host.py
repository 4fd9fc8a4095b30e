"""One grading sandbox per submission: a zygote that imports torch once and forks each student process.

Starting Python and importing torch costs seconds; a submission needs several student processes (the checks,
the checks with the reference loss, the training run, a fresh one after every crash). The zygote pays that
start-up once, under its own time limit (never the student's), and every student process is a fork of it
(milliseconds). Everything runs inside one bubblewrap sandbox (``isolation.py``), which dies, with every process
in it, when the host is closed.
"""
from __future__ import annotations

import io
import os
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from . import isolation
from .integrity import CodeSnapshot, grader_code

MAX_MESSAGE = 256 * 2**20


class GraderError(RuntimeError):
    """Grading could not happen for a reason that is not the student's (an overloaded machine, no sandbox)."""


class ChannelClosed(Exception):
    """The other side of a channel closed it or died."""


class Channel:
    """Whole ``torch.save`` messages over a socket (the channel owns ``fd``); what arrives is loaded with
    ``weights_only=True`` (data only)."""

    def __init__(self, fd: int):
        self._connection = Connection(fd)

    def send(self, message: dict) -> None:
        buffer = io.BytesIO()
        torch.save(message, buffer)
        try:
            self._connection.send_bytes(buffer.getvalue())
        except OSError:
            pass  # the other side died; the next receive says how

    def poll(self, timeout_s: float) -> bool:
        try:
            return timeout_s > 0 and self._connection.poll(timeout_s)
        except (EOFError, OSError):
            return True  # readable: the receive that follows reports the closed channel

    def receive(self) -> Any:
        """The next message; ChannelClosed at EOF, ValueError for something that is not plain data."""
        try:
            data = self._connection.recv_bytes(MAX_MESSAGE)
        except (EOFError, OSError):
            raise ChannelClosed from None
        return torch.load(io.BytesIO(data), weights_only=True)

    def close(self) -> None:
        self._connection.close()


class SandboxHost:
    """The zygote process of one submission, in its own sandbox (``limits.sandbox``), started on first use."""

    def __init__(self, limits, code: CodeSnapshot | None = None, data_dirs: tuple[str, ...] = (), gpu: bool = False):
        self.limits, self.data_dirs, self.gpu = limits, data_dirs, gpu
        self.boot_s: float | None = None
        self._folder = Path(tempfile.mkdtemp(prefix="simclr-sandbox-"))
        self._code = self._folder / "code"
        (code or grader_code()).write_student_code(self._code)
        self._process: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._channel: Channel | None = None
        self.log_path = self._folder / "output.log"

    def __enter__(self) -> "SandboxHost":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _command(self, control_fd: int) -> tuple[list[str], str]:
        sandboxed = self.limits.sandbox != "none"
        code = Path(isolation.CODE_DIR) if sandboxed else self._code
        argv = [sys.executable, "-S", str(code / "worker.py"), str(control_fd), *site.getsitepackages()]
        if not sandboxed:
            return argv, str(self._code)
        return isolation.bwrap_command(self._code, argv, self.data_dirs, self.gpu), "/tmp/home"

    def start(self) -> None:
        """Start the zygote and wait for its imports; GraderError if that fails (no student code has run)."""
        self.stop()
        ours, theirs = socket.socketpair()
        command, home = self._command(theirs.fileno())
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": "/tmp" if home == "/tmp/home" else home,
               "LANG": "C.UTF-8", "OMP_NUM_THREADS": str(self.limits.threads), "MPLBACKEND": "Agg",
               "PYTHONDONTWRITEBYTECODE": "1", "CUDA_CACHE_PATH": f"{home}/.nv"}
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(command, cwd=self._code, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=log, pass_fds=(theirs.fileno(),), start_new_session=True)
        theirs.close()
        self._control, self._channel = ours, Channel(os.dup(ours.fileno()))
        start = time.monotonic()
        try:
            self._expect("booted", self.limits.boot_timeout_s, "starting Python and importing torch")
        except GraderError as error:
            log = self.log_path.read_text(errors="replace")[-500:]
            self.stop()
            raise GraderError(f"{error}. No student code had run: the machine is overloaded or the installation is "
                              f"broken; grade again (fewer --workers). Its output: {log!r}") from None
        self.boot_s = time.monotonic() - start

    def _expect(self, key: str, timeout_s: float, doing: str) -> Any:
        if self._channel is None or not self._channel.poll(timeout_s):
            raise GraderError(f"the sandbox did not answer within {timeout_s:.0f} s while {doing}")
        try:
            reply = self._channel.receive()
        except (ChannelClosed, ValueError) as error:
            code = self._process.poll() if self._process else None
            raise GraderError(f"the sandbox stopped while {doing} (exit code {code}; {type(error).__name__})") from None
        if not isinstance(reply, dict) or key not in reply:
            raise GraderError(f"the sandbox sent an unexpected reply while {doing}")
        return reply[key]

    def fork(self, memory_mb: int, cpu_s: int, threads: int, isolate: bool = True) -> tuple[int, Channel]:
        """A fresh student process with these limits: its pid (inside the sandbox) and its channel."""
        for attempt in range(2):  # a zygote that died (the student may kill it) is started again once
            if self._process is None or self._process.poll() is not None:
                self.start()
            try:
                self._channel.send({"fork": {"memory_mb": memory_mb, "cpu_s": cpu_s, "threads": threads,
                                             "isolate": isolate}})
                if not self._channel.poll(self.limits.boot_timeout_s):
                    raise GraderError("the sandbox did not fork a student process")
                _, fds, _, _ = socket.recv_fds(self._control, 1, 1)
                if len(fds) != 1:
                    raise GraderError("the sandbox did not hand over a student process")
                pid = self._expect("pid", self.limits.boot_timeout_s, "forking a student process")
                return int(pid), Channel(fds[0])
            except (GraderError, OSError):
                if attempt:
                    raise
                self.stop()
        raise AssertionError("unreachable")

    def kill(self, pid: int) -> int | None:
        """Kill a student process (and its process group); its exit status: a code, or minus the signal."""
        if self._process is None or self._process.poll() is not None:
            return None
        self._channel.send({"kill": pid})
        try:
            status = self._expect("status", 30, "stopping a student process")
        except GraderError:
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
        if self._channel is not None:
            self._channel.close()
            self._control.close()
            self._channel = self._control = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._folder, ignore_errors=True)
