"""Real servers for the tests, started on 127.0.0.1 and stopped afterwards: PostgreSQL and a Dask cluster.

PostgreSQL's binaries come from PyPI's ``pgserver`` wheel (installed by ``setup.sh`` with the course's
``[test]`` extra; only its binaries are used, not its server manager), or from ``postgres``/``initdb`` on PATH
(Debian's ``postgresql`` package). PostgreSQL refuses to run as root, so as root the server runs as ``nobody``.
The Dask scheduler and workers are ``python -m distributed.cli.dask_*`` processes of this interpreter.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: pgserver's wheel, else PATH; None if neither."""
    spec = importlib.util.find_spec("pgserver")
    if spec and spec.submodule_search_locations:
        folder = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
        if (folder / "postgres").is_file():
            return folder
    found = shutil.which("postgres")
    return Path(found).parent if found and (Path(found).parent / "initdb").is_file() else None


def _wait_for(port: int, process: subprocess.Popen, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout_s} s: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A fresh PostgreSQL cluster on 127.0.0.1 (trust authentication, fsync off); yields the URL of its
    ``postgres`` database, ``postgresql://postgres@127.0.0.1:PORT/postgres``."""
    binaries = postgres_binaries()
    if binaries is None:
        raise RuntimeError("no PostgreSQL server binaries: pip install -e '.[test]' (pgserver), or install Debian's "
                           "postgresql package")
    folder = Path(tempfile.mkdtemp(prefix="simclr-postgres-"))
    data, log = folder / "data", folder / "server.log"
    data.mkdir()
    as_nobody = os.geteuid() == 0
    if as_nobody:
        nobody = pwd.getpwnam("nobody")
        os.chmod(folder, 0o755)
        for path in (data, folder):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)

    def drop_root() -> None:
        if as_nobody:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)

    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    subprocess.run([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True, preexec_fn=drop_root, env=env, cwd=folder)
    port = free_port()
    with open(log, "wb") as output:
        server = subprocess.Popen([str(binaries / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                                   "-k", str(folder), "-c", "fsync=off", "-c", "max_connections=200"],
                                  stdout=output, stderr=subprocess.STDOUT, preexec_fn=drop_root, env=env, cwd=folder)
    try:
        _wait_for(port, server, 60, "postgres", log)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        _stop(server, signal.SIGINT)   # "fast shutdown"
        shutil.rmtree(folder, ignore_errors=True)


class DaskCluster:
    """A ``dask scheduler`` on 127.0.0.1 and ``dask worker --nthreads 1 --no-nanny`` processes, each a process of
    its own, by name; every one is stopped by ``close``."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="simclr-dask-"))
        self.workers: dict[str, subprocess.Popen] = {}
        self.options: dict[str, tuple[str, ...]] = {}
        self._processes: list[subprocess.Popen] = []
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        scheduler = self._start("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                                              str(port), "--dashboard-address", ":0"])
        _wait_for(port, scheduler, 60, "dask scheduler", self.folder / "scheduler.log")

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        with open(self.folder / f"{name}.log", "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT,
                                       cwd=self.folder, start_new_session=True)
        self._processes.append(process)
        return process

    def start_worker(self, name: str, options: tuple[str, ...] = ()) -> None:
        """Start a worker (``options``: more ``dask worker`` options, e.g. ``("--resources", "GPU=1")``)."""
        self.options[name] = options
        self.workers[name] = self._start(name, ["distributed.cli.dask_worker", self.address, "--name", name,
                                                "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                                                "--dashboard-address", ":0", *options])

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def close(self) -> None:
        for process in reversed(self._processes):
            _stop(process)
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def dask_cluster(n_workers: int = 2, gpu_workers: int = 0) -> Iterator[DaskCluster]:
    """A scheduler and ``n_workers`` workers (``w0``, ``w1``, ...), the last ``gpu_workers`` of them declaring a
    ``GPU`` resource (a label for the scheduler: this machine has no GPU); all joined before it is handed over."""
    cluster = DaskCluster()
    try:
        for i in range(n_workers):
            cluster.start_worker(f"w{i}", ("--resources", "GPU=1") if i >= n_workers - gpu_workers else ())
        from distributed import Client
        with Client(cluster.address, timeout="30s", set_as_default=False) as client:
            client.wait_for_workers(n_workers, timeout=120)
        yield cluster
    finally:
        cluster.close()
