"""The processes that run a submission's code, started by ``host.SandboxHost`` inside the grading sandbox.

``python -S worker.py CONTROL_FD SITE_PACKAGES...`` starts the *zygote* (no site hooks, so none of the course's
own packages is importable). It imports torch and the notebook's imports once, says ``{"booted": True}`` (the
grader times that start-up apart from the student's limits), then serves its control socket:

- ``{"fork": {"memory_mb", "cpu_s", "threads"}}``: fork a fresh student process with those limits; its end of a
  new socket pair goes to the grader (SCM_RIGHTS), the reply is ``{"pid"}``;
- ``{"kill": pid}``: kill that student process and its process group; the reply is ``{"status"}`` (exit code,
  or minus the signal).

A student process defines the answer cells in one namespace, then answers requests ``{"op", "kwargs"}`` with
``{"ok", "result"}`` or ``{"ok": False, "error"}``. Every message is ``torch.save`` bytes read back with
``weights_only=True`` on the other side: only tensors, numbers, strings and containers of them cross.
"""
import io
import os
import resource
import signal
import socket
import sys

PREAMBLE = """
import copy
import math
import os
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms
import simclr_helpers as lab
"""


def _channel(sock: socket.socket):
    """send/receive of whole messages over a connected socket."""
    import torch
    from multiprocessing.connection import Connection
    connection = Connection(sock.detach())

    def send(message: dict) -> None:
        buffer = io.BytesIO()
        torch.save(message, buffer)
        connection.send_bytes(buffer.getvalue())

    def receive() -> dict:
        return torch.load(io.BytesIO(connection.recv_bytes()), weights_only=True)

    return send, receive


def _set_limits(memory_mb: int, cpu_s: int) -> None:
    for kind, limit in ((resource.RLIMIT_DATA, memory_mb * 2**20), (resource.RLIMIT_CPU, cpu_s)):
        if limit > 0:
            try:
                resource.setrlimit(kind, (limit, limit))
            except (ValueError, OSError) as error:  # a system that will not lower the limit: grade without it
                print(f"limit {kind} not set: {error}", file=sys.stderr)


def student_process(sock: socket.socket, preamble: dict, limits: dict) -> None:
    """Define the student's cells, then run ops on them until the grader kills this process."""
    import torch
    from simclr_helpers.checks import OPS, StudentCodeError
    _set_limits(limits["memory_mb"], limits["cpu_s"])
    torch.set_num_threads(limits["threads"])
    send, receive = _channel(sock)
    namespace = dict(preamble)
    setup = receive()
    cell_errors = {}
    for label, source in setup["cells"]:
        send({"running": label})
        try:
            exec(compile(source, f"<cell {label}>", "exec"), namespace)
        except BaseException as error:  # the student's SystemExit too
            cell_errors[label] = f"{type(error).__name__}: {error}"[:500]
    if setup.get("inject"):
        exec(setup["inject"], namespace)
    send({"ready": True, "cell_errors": cell_errors})

    while True:
        request = receive()
        try:
            send({"ok": True, "result": OPS[request["op"]](namespace, **request["kwargs"])})
        except StudentCodeError as error:
            send({"ok": False, "error": str(error)[:1000]})
        except BaseException as error:
            send({"ok": False, "error": f"{type(error).__name__}: {error}"[:1000]})


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    sys.path[:0] = [os.path.dirname(os.path.abspath(__file__))] + sys.argv[2:]
    preamble: dict = {"__name__": "__main__"}
    exec(PREAMBLE, preamble)
    import simclr_helpers.checks  # noqa: F401 - imported once here, inherited by every student process
    control_fd = control.fileno()
    send, receive = _channel(socket.socket(fileno=os.dup(control_fd)))
    send({"booted": True})
    while True:
        request = receive()
        if "fork" in request:
            ours, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:
                try:
                    os.setsid()
                    control.close()
                    theirs.close()
                    student_process(ours, preamble, request["fork"])
                finally:
                    os._exit(0)
            ours.close()
            socket.send_fds(control, [b"F"], [theirs.fileno()])
            theirs.close()
            send({"pid": pid})
        elif "kill" in request:
            pid = int(request["kill"])
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            except ChildProcessError:
                status = None
            send({"status": status})


if __name__ == "__main__":
    main()
