"""The processes that run a submission's code, started by ``host.SandboxHost`` inside the grading sandbox.

``python -S worker.py CONTROL_FD SITE_PACKAGES...`` starts the *zygote* (no site hooks, so none of the course's
own packages is importable). It imports torch and the notebook's imports once, says ``{"booted": True}`` (the
grader times that start-up apart from the student's limits), then serves its control socket:

- ``{"fork": {"memory_mb", "cpu_s", "threads"}}``: fork a fresh student process with those limits; its end of a
  new socket pair goes to the grader (SCM_RIGHTS), the reply is ``{"pid"}``;
- ``{"kill": pid}``: kill that student process and its process group; the reply is ``{"status"}`` (exit code,
  or minus the signal).

A student process defines the answer cells in one namespace, then answers requests ``{"op", "kwargs"}`` with
``{"ok", "result"}`` or ``{"ok": False, "error"}``. With ``isolate`` (the default), it runs only the cells'
definitions (``simclr_helpers.definitions``: nothing of the student's runs before an op calls it), and an op that
hands modules to student code runs that call in a child process and reads the modules' shared memory itself
(``fork_watch``). Every message is ``torch.save`` bytes read back with
``weights_only=True`` on the other side: only tensors, numbers, strings and containers of them cross.
"""
import io
import mmap
import os
import resource
import signal
import socket
import sys


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


_CHANNEL_FD: list[int] = []  # the student process's socket to the grader, closed in every child of fork_watch
_SHARED_MAPS: list = []  # the shared memory behind watched modules, kept for the life of the process


def _share(tensor) -> None:
    """Move a tensor's data into anonymous shared memory, which a forked child writes and this process reads."""
    import torch
    size = tensor.numel() * tensor.element_size()
    if size == 0:
        return
    memory = mmap.mmap(-1, size)
    _SHARED_MAPS.append(memory)
    shared = torch.frombuffer(memory, dtype=tensor.dtype, count=tensor.numel()).view(tensor.shape)
    shared.copy_(tensor.detach())
    tensor.data = shared


def fork_watch(call, modules: dict) -> tuple:
    """``checks.WATCH`` in the grader: ``call()`` (student code) runs in a child; the modules' parameters and buffers
    are in memory shared with it, so their state is read here, where no student code has run."""
    import torch
    from simclr_helpers.checks import StudentCodeError, plain_state
    for module in modules.values():
        for tensor in list(module.parameters()) + list(module.buffers()):
            _share(tensor)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        for fd in _CHANNEL_FD:  # the child answers through the pipe only: it cannot speak for its parent
            os.close(fd)
        try:
            reply = {"ok": True, "data": call()}
        except StudentCodeError as error:
            reply = {"ok": False, "error": str(error)[:1000]}
        except BaseException as error:  # the student's SystemExit too
            reply = {"ok": False, "error": f"{type(error).__name__}: {error}"[:1000]}
        buffer = io.BytesIO()
        torch.save(reply, buffer)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(buffer.getvalue())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        raw = pipe.read()
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    states = {name: plain_state(module) for name, module in modules.items()}
    try:
        reply = torch.load(io.BytesIO(raw), weights_only=True)
    except Exception:  # noqa: BLE001 - nothing, or not plain data
        reply = None
    if not isinstance(reply, dict) or not isinstance(reply.get("data", {}), dict):
        how = f"killed by signal {-status}" if status < 0 else f"exited with code {status}"
        raise StudentCodeError(f"the process running your function {how} without a result "
                               "(sys.exit, os._exit, a crash, or the memory limit)")
    if not reply.get("ok"):
        raise StudentCodeError(str(reply.get("error")))
    return reply["data"], states


def _define_cells(cells: list, namespace: dict, isolate: bool, send) -> tuple[dict, dict]:
    """Run each cell (only its definitions, with ``isolate``); errors and left-out statements by cell label."""
    from simclr_helpers.definitions import define
    cell_errors, left_out = {}, {}
    for label, source in cells:
        send({"running": label})
        try:
            if isolate:
                left_out[label] = define(source, namespace, label)
            else:
                exec(compile(source, f"<cell {label}>", "exec"), namespace)
        except BaseException as error:  # the student's SystemExit too
            cell_errors[label] = f"{type(error).__name__}: {error}"[:500]
    return cell_errors, left_out


def student_process(sock: socket.socket, preamble: dict, limits: dict) -> None:
    """Define the student's cells, then run ops on them until the grader kills this process."""
    import torch
    from simclr_helpers import checks
    from simclr_helpers.checks import OPS, StudentCodeError
    _set_limits(limits["memory_mb"], limits["cpu_s"])
    torch.set_num_threads(limits["threads"])
    isolate = limits.get("isolate", True)
    if isolate:
        checks.WATCH = fork_watch
    _CHANNEL_FD.append(sock.fileno())
    send, receive = _channel(sock)
    namespace = dict(preamble)
    setup = receive()
    cell_errors, left_out = _define_cells(setup["cells"], namespace, isolate, send)
    if setup.get("inject"):
        exec(setup["inject"], namespace)
    send({"ready": True, "cell_errors": cell_errors, "left_out": left_out})

    while True:
        request = receive()
        try:
            send({"ok": True, "result": OPS[request["op"]](namespace, **request["kwargs"])})
        except StudentCodeError as error:
            send({"ok": False, "error": str(error)[:1000]})
        except BaseException as error:
            send({"ok": False, "error": f"{type(error).__name__}: {error}"[:1000]})


def _not_dumpable() -> None:
    """PR_SET_DUMPABLE 0 (inherited by every fork): no process of the same user may ptrace this one or write its
    memory through /proc/PID/mem, so a student process cannot change the zygote or its own parent."""
    import ctypes
    if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def main() -> None:
    _not_dumpable()
    control = socket.socket(fileno=int(sys.argv[1]))
    sys.path[:0] = [os.path.dirname(os.path.abspath(__file__))] + sys.argv[2:]
    from simclr_helpers.definitions import NOTEBOOK_IMPORTS
    preamble: dict = {"__name__": "__main__"}
    exec(NOTEBOOK_IMPORTS, preamble)
    import simclr_helpers.checks  # noqa: F401 - imported once here, inherited by every student process
    import simclr_helpers.definitions  # noqa: F401
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
