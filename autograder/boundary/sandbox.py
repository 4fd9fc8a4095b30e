"""A student process that holds a submission's code and runs ops on it, seen from the grader.

The grader sends inputs, and receives plain data (``simclr_helpers.wire``) whose form it checks (``replies.py``)
before anything is computed on it. Module weights a call changes are read from memory the grader owns
(``shared_state.py``). For the checks of ``train_epoch`` the course's loss is computed here, on request of the
student process, so that process never holds its code.
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from simclr_helpers import wire
from simclr_helpers.checks import WATCHED, StudentCodeError

from autograder.boundary import replies
from autograder.boundary.cpu_clock import CheckClock, CpuLimitReached, Stopwatch
from autograder.boundary.host import GraderError, SandboxHost
from autograder.boundary.integrity import CodeSnapshot
from autograder.boundary.shared_state import SharedState

__all__ = ["GraderError", "Limits", "Sandbox", "SandboxHost"]

# Each call of these gets a fresh student process: what one call was given cannot inform another.
FRESH_PROCESS_OPS = frozenset(WATCHED)


@dataclass(frozen=True)
class Limits:
    """How student processes run.

    ``sandbox``: "bwrap", or "none" for trusted code only. Times: the limit of one check and of defining the answer
    cells, in CPU time of all their processes where the sandbox's cgroup counts it (``cpu_clock.py``: load does not
    shorten it; the wall-clock backstop is ``overload_factor`` times longer), else in wall time; and the interpreter's
    own start-up (``boot_timeout_s``, never the student's time). A student process: its memory (data segment, MiB)
    and CPU-time limits (``cpu_s``, per process), its threads. A sandbox (all of one submission's
    processes, where a cgroup can be made): ``memory_mb`` + ``zygote_mb`` of memory, ``max_processes`` tasks and
    ``threads`` CPUs (where the cgroup has the cpu controller);
    ``scratch_mb`` each for its ``/tmp`` and ``/dev/shm``; ``output_mb`` the largest file it may write.
    ``budget_s``: the wall-clock budget of one submission, everything included (default: the sum of its limits,
    ``pool.budget_s``). ``definitions_only``: run only the answer cells' definitions (imports, functions, classes, simple constants),
    so that top-level code does not cost grading time; verdicts do not depend on it.
    """
    check_timeout_s: float = 60.0
    startup_timeout_s: float = 60.0
    boot_timeout_s: float = 300.0
    memory_mb: int = 4096
    cpu_s: int = 3600
    threads: int = 1
    sandbox: str = "bwrap"
    definitions_only: bool = True
    zygote_mb: int = 2048
    max_processes: int = 128
    scratch_mb: int = 256
    output_mb: int = 64
    budget_s: float | None = None
    overload_factor: float = 5.0

    def for_student(self) -> dict:
        """What the zygote needs to set up a student process."""
        return {"memory_mb": self.memory_mb, "cpu_s": self.cpu_s, "threads": self.threads,
                "tmp_mb": self.scratch_mb, "shm_mb": self.scratch_mb, "max_processes": self.max_processes}


class Sandbox:
    """Runs ``simclr_helpers.checks`` ops on the student's cells in one student process forked by a SandboxHost.

    ``cells`` are (label, source) pairs defined in order. With ``course_loss``, ``nt_xent`` is then replaced by the
    course's, computed by the grader (the checks of ``train_epoch``, graded alone). A cell that hangs or kills the
    process while being defined is left out and the rest are defined again (``cells`` keeps what is left). Call
    ``start_check`` before each check: its ops share one time limit, and once it is used every op fails at once, so
    a hanging function costs one check and one time limit. Without it, every op gets ``check_timeout_s`` of its own. Every call of ``train_epoch`` and ``linear_probe`` gets a fresh process
    (``FRESH_PROCESS_OPS``), so no call can see what an earlier one was given. Pass the submission's ``host`` to share its sandbox
    (and its start-up); without one the Sandbox makes its own from ``code``, ``data_dirs`` and ``gpu``.
    """

    def __init__(self, cells: list[tuple[str, str]], limits: Limits, course_loss: bool = False,
                 code: CodeSnapshot | None = None, data_dirs: tuple[str, ...] = (), gpu: bool = False,
                 host: SandboxHost | None = None):
        self.cells, self.limits, self.course_loss = list(cells), limits, course_loss
        self.cell_errors: dict[str, str] = {}
        self.left_out: dict[str, list[str]] = {}
        self.clock: CheckClock | None = None
        self._time_limit: str | None = None   # why the current check's time ran out
        self._own_host = host is None
        self.host = host or SandboxHost(limits, code, data_dirs, gpu)
        self._pid: int | None = None
        self._socket: socket.socket | None = None
        self._served = 0

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._kill()
        if self._own_host:
            self.host.close()

    # --- process lifecycle -----------------------------------------------------------------------------

    def _kill(self, exited: bool = False) -> int | None:
        """End the student process's check; its exit status (a code, or minus the signal) if it ended by itself."""
        if self._pid is None:
            return None
        status = self.host.kill(self._pid, exited)
        self._socket.close()
        self._pid = self._socket = None
        return status

    def _abandon(self) -> None:
        """Stop the whole sandbox (every process in it) without waiting for the zygote; it starts again on next use."""
        self.host.stop()
        if self._socket is not None:
            self._socket.close()
        self._pid = self._socket = None

    def _start(self) -> None:
        """Fork a student process and define the cells; leave out any cell that hangs or kills the process."""
        while True:
            self._pid, self._socket = self.host.fork(self.limits.for_student())
            self._served = 0
            clock = self._clock(self.limits.startup_timeout_s)
            running = None
            try:
                self._send({"cells": self.cells, "definitions_only": self.limits.definitions_only,
                            "course_loss": self.course_loss}, clock=clock, doing="defining your functions")
                while True:
                    message = self._receive(clock, "defining your functions", replies.MAX_REPLY_BYTES)
                    if "running" in message:
                        self._check(replies.PROGRESS, message)
                        running = message["running"]
                    else:
                        self._check(replies.READY, message)
                        self.cell_errors.update(message["cell_errors"])
                        self.left_out.update(message["left_out"])
                        return
            except StudentCodeError as error:
                self._kill()
                if running is None:   # no student code had run yet: the sandbox failed, not the student
                    raise GraderError(f"a student process failed before any student code ran ({error}); grade "
                                      "again (fewer --workers if the machine is overloaded)") from None
                self.cell_errors[running] = str(error)
                self.cells = [(label, source) for label, source in self.cells if label != running]

    def start_check(self, limit_s: float, wall_clock: bool = False) -> None:
        """Start one check's time limit: CPU time where the sandbox counts it (call ``ensure_started`` first), wall
        time with ``wall_clock`` (the training run, whose time is the device's)."""
        self.clock, self._time_limit = self._clock(limit_s, wall_clock), None

    def _clock(self, limit_s: float, wall_clock: bool = False) -> CheckClock:
        return CheckClock(limit_s, None if wall_clock else self.host.cgroup, self.limits.overload_factor)

    def ensure_started(self) -> None:
        """Start the student process now (if it is not running), so that its start-up does not count against a
        check; raises GraderError if the sandbox itself cannot start."""
        if self._pid is None:
            self._start()

    # --- messages --------------------------------------------------------------------------------------

    def _send(self, message: dict, fds: tuple[int, ...] = (), *, clock: CheckClock, doing: str) -> None:
        """Send to the student process, which must take it within ``clock``'s time (it may have stopped reading)."""
        try:
            self._wait(clock, doing, lambda deadline: wire.send(self._socket, message, fds, deadline))
        except OSError:
            pass  # the student process is gone; the next receive says how

    def _wait(self, clock: CheckClock, doing: str, wait):
        """``wait(deadline)``, a send or a receive, on ``clock``'s time: a StudentCodeError at its limit, a
        GraderError if the machine was too busy to give the student its CPU time."""
        try:
            with Stopwatch(clock):
                return wait(wire.Deadline(time.monotonic() + clock.remaining_wait_s(), clock.watch))
        except CpuLimitReached:
            self._kill()
            self._time_limit = (f"time limit: {doing} used its {clock.limit_s:.0f} s of CPU time; is there an endless "
                                "loop?")
        except wire.MessageTimeout:
            if clock.counts_cpu and clock.overloaded():
                self._abandon()   # asking a starved zygote to kill one process could wait as long again
                raise GraderError(f"the machine was overloaded: in {clock.waited_s:.0f} s of {doing}, the student's "
                                  f"process waited {clock.waiting_for_cpu_s():.0f} s for a CPU and used "
                                  f"{clock.cpu_used_s():.1f} s of its {clock.limit_s:.0f} s of CPU time; grade again "
                                  "(fewer --workers)") from None
            self._kill()
            if not clock.counts_cpu:
                self._time_limit = (f"time limit: {doing} did not finish within {clock.limit_s:.0f} s; is there an "
                                    "endless loop, or did your code stop reading what the grader sent it?")
            else:
                self._time_limit = (f"time limit: {doing} waited {clock.waited_s:.0f} s and used only "
                                    f"{clock.cpu_used_s():.1f} s of CPU time: your code waits for something that "
                                    "never comes (sleep, input(), a lock, or it stopped reading what the grader sent "
                                    "it)")
        raise StudentCodeError(self._time_limit)

    def _check(self, validator, message: Any) -> None:
        try:
            validator(message, "the message")
        except replies.ReplyError as error:
            self._kill()
            raise StudentCodeError(f"the student process sent a message of the wrong form: {error}") from None

    def _receive(self, clock: CheckClock, doing: str, max_bytes: int) -> Any:
        try:
            message = self._wait(clock, doing, lambda deadline: wire.receive(
                self._socket, max_bytes + wire.MAX_HEADER, deadline, max_bytes))
        except (wire.ChannelClosed, OSError):
            code = self._kill(exited=True)
            reason = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
            raise StudentCodeError(f"the process running your code {reason} while {doing} "
                                   "(sys.exit, os._exit, a crash, or the memory limit)") from None
        except wire.NotPlainData as error:
            self._kill()
            raise StudentCodeError(f"the student process sent something that is not plain data ({error})") from None
        except (StudentCodeError, GraderError):
            raise
        except Exception as error:  # noqa: BLE001 - whatever else its bytes make the reader raise is the student's
            self._kill()
            raise StudentCodeError("the student process sent something the grader cannot read "
                                   f"({type(error).__name__}: {str(error)[:200]})") from None
        if not isinstance(message, dict):
            self._kill()
            raise StudentCodeError("the student process sent something that is not a message")
        return message

    def _answer_course_loss(self, message: dict, clock: CheckClock) -> None:
        """The course's NT-Xent and its gradients for a request of the student process (``course_loss`` only)."""
        from reference.loss import nt_xent
        try:
            z_i, z_j, temperature = replies.check_course_loss(message)
            a, b = z_i.clone().requires_grad_(True), z_j.clone().requires_grad_(True)
            loss = nt_xent(a, b, temperature)
            loss.backward()
        except Exception as error:  # noqa: BLE001 - a request of any other form is the student process's
            self._kill()
            raise StudentCodeError(f"the student process sent a message of the wrong form: {error}") from None
        self._send({"loss": loss.detach(), "grad_i": a.grad, "grad_j": b.grad}, clock=clock,
                   doing="running train_epoch")

    def run(self, op: str, **kwargs) -> Any:
        """Run one op (see ``simclr_helpers.checks.OPS``) on the student's code; plain data back, of the op's form."""
        if self.clock is not None and self.clock.spent():
            raise StudentCodeError(f"this check already used its time ({self._time_limit or 'time limit'})")
        if op in FRESH_PROCESS_OPS and self._served:
            self._kill()
        self.ensure_started()
        self._served += 1
        clock = self.clock if self.clock is not None else self._clock(self.limits.check_timeout_s)
        shared = SharedState({key: kwargs[name] for key, name in WATCHED.get(op, {}).items()}) \
            if op in WATCHED else None
        try:
            request = {"op": op, "kwargs": kwargs}
            if shared is not None:
                request.update(shared=shared.layout, shared_bytes=shared.size)
            self._send(request, (shared.fd,) if shared is not None else (), clock=clock, doing=f"running {op}")
            while True:
                reply = self._receive(clock, f"running {op}", replies.max_bytes(op))
                if self.course_loss and "course_loss" in reply:
                    self._answer_course_loss(reply, clock)
                    continue
                self._check(replies.REPLY, reply)
                break
            if not reply["ok"]:
                raise StudentCodeError(str(reply.get("error")))
            result = reply.get("result")
            try:
                replies.check_result(op, kwargs, result)
            except replies.ReplyError as error:
                self._kill()
                raise StudentCodeError(f"the student process sent a result of the wrong form: {error}") from None
            if shared is not None:
                result.update(shared.read())
            return result
        finally:
            if shared is not None:
                shared.close()


