"""The process that runs a submission's code: copied into a scratch folder and started by ``sandbox.Sandbox``.

It runs with ``python -S`` (no site hooks, so none of the course's own packages is importable), normally inside
the grading sandbox (``isolation.py``). Once torch is imported it says ``{"booted": True}`` (the grader times
that start-up apart from the student's limits), defines the student's answer cells in one namespace, then answers requests ``{"op", "kwargs"}`` with
``{"ok", "result"}`` or ``{"ok": False, "error"}``. Requests and replies are ``torch.save`` bytes read back
with ``weights_only=True`` on the other side: only tensors, numbers, strings and containers of them cross.
"""
import io
import os
import resource
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


def main() -> None:
    read_fd, write_fd, memory_mb, cpu_s, threads = (int(v) for v in sys.argv[1:6])
    sys.path[:0] = [os.path.dirname(os.path.abspath(__file__))] + sys.argv[6:]
    limits = [(resource.RLIMIT_DATA, memory_mb * 2**20), (resource.RLIMIT_CPU, cpu_s)]
    for kind, limit in limits:
        if limit > 0:
            try:
                resource.setrlimit(kind, (limit, limit))
            except (ValueError, OSError) as error:  # a system that will not lower the limit: grade without it
                print(f"limit {kind} not set: {error}", file=sys.stderr)
    from multiprocessing.connection import Connection
    import torch
    torch.set_num_threads(threads)
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)

    def send(message: dict) -> None:
        buffer = io.BytesIO()
        torch.save(message, buffer)
        outbox.send_bytes(buffer.getvalue())

    def receive() -> dict:
        return torch.load(io.BytesIO(inbox.recv_bytes()), weights_only=True)

    namespace: dict = {"__name__": "__main__"}
    exec(PREAMBLE, namespace)
    from simclr_helpers.checks import OPS, StudentCodeError
    send({"booted": True})
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


if __name__ == "__main__":
    main()
