"""A control group per grading sandbox: a ceiling on the memory, the processes and the CPUs of everything in it.

Per-process limits (``RLIMIT_DATA``, ``RLIMIT_CPU``) do not bound a submission that forks, and ``RLIMIT_NPROC`` is
not enforced for a grader that runs as root; a cgroup bounds the sandbox as a whole. The grader makes one where it
may: under its own cgroup in a cgroup v2 hierarchy whose ``memory`` and ``pids`` controllers are enabled for
children, or in the v1 ``memory`` and ``pids`` hierarchies where it can write them (root in a container, for
instance). Where the ``cpu`` controller is there too, the sandbox's processes together get at most a given number
of CPUs (so a submission that forks busy loops slows itself, not the submissions graded beside it); where the
cgroup counts CPU time (v2, or v1 ``cpuacct``), a check's time limit is spent in it (``cpu_clock.py``). Where it can
make none, grading goes on with the per-process limits and the time limits, and :func:`unavailable` says why.
"""
from __future__ import annotations

import functools
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000
_names = itertools.count()


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per hierarchy: "" for v2, the controller names for v1."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        paths[controllers] = path
    return paths


def _v2_parent() -> Path | None:
    own = _own_paths().get("")
    if own is None:
        return None
    for mount in (ROOT, ROOT / "unified"):
        parent = mount / own.lstrip("/")
        control = parent / "cgroup.subtree_control"
        if control.is_file() and {"memory", "pids"} <= set(control.read_text().split()) and os.access(parent, os.W_OK):
            return parent
    return None


def _v1_parents() -> dict[str, Path] | None:
    own = _own_paths()
    parents = {}
    for controller in ("memory", "pids", "cpu", "cpuacct"):
        path = next((p for names, p in own.items() if controller in names.split(",")), None)
        folder = ROOT / controller / (path or "/").lstrip("/")
        if path is None or not folder.is_dir() or not os.access(folder, os.W_OK):
            if controller in ("cpu", "cpuacct"):   # optional: CPUs bounded as a whole; CPU time counted
                continue
            return None
        parents[controller] = folder
    return parents


@functools.lru_cache(maxsize=1)
def _layout() -> tuple[str, object]:
    try:
        parent = _v2_parent()
        if parent is not None:
            return "v2", parent
        parents = _v1_parents()
        if parents is not None:
            return "v1", parents
    except OSError:
        pass
    return "none", None


def cpu_unavailable() -> str:
    """Empty if a sandbox's CPUs are bounded as a whole here; otherwise why not."""
    kind, where = _layout()
    if kind == "v1" and "cpu" in where or kind == "v2" and "cpu" in (where / "cgroup.subtree_control").read_text().split():
        return ""
    return ("no writable cgroup with the cpu controller: a submission that forks busy processes can slow the "
            "submissions graded beside it (never their grades' correctness, only their time)")


def cpu_time_unavailable() -> str:
    """Empty if a sandbox's cgroup counts its CPU time here (so time limits are CPU time); otherwise why not."""
    kind, where = _layout()
    if kind == "v2" or kind == "v1" and "cpuacct" in where:
        return ""
    return ("no writable cgroup that counts CPU time (v2, or the v1 cpuacct hierarchy): time limits are wall-clock "
            "time, so a busy machine can make a slow check miss its limit; grade with fewer --workers")


def unavailable() -> str:
    """Empty if sandboxes get a cgroup here; otherwise why not."""
    if _layout()[0] != "none":
        return ""
    return ("no writable cgroup with the memory and pids controllers: a submission's processes are bounded one by "
            "one (memory, CPU time) and by the time limits, not as a whole; grade in a container or a systemd "
            "scope with a delegated cgroup (memory, pids) to bound them together")


@dataclass
class SandboxCgroup:
    """One sandbox's cgroup (one folder per hierarchy); :meth:`join` from the sandbox's first process."""
    folders: list[Path]

    @classmethod
    def create(cls, memory_mb: int, max_processes: int, cpus: float = 0) -> "SandboxCgroup | None":
        """A new cgroup with these ceilings (0: none), or None where none can be made. ``cpus``: the CPU time of
        all its processes together, in CPUs (applied where the cpu controller is available)."""
        kind, where = _layout()
        if kind == "none":
            return None
        name = f"simclr-sandbox-{os.getpid()}-{next(_names)}"
        group = cls([where / name] if kind == "v2" else [parent / name for parent in where.values()])
        memory = str(memory_mb * 2**20)
        quota = max(1000, round(cpus * CPU_PERIOD_US))
        settings = {"v2": [("memory.max", memory, memory_mb), ("memory.swap.max", "0", memory_mb),
                           ("pids.max", str(max_processes), max_processes),
                           ("cpu.max", f"{quota} {CPU_PERIOD_US}", cpus)],
                    "v1": [("memory.limit_in_bytes", memory, memory_mb), ("memory.memsw.limit_in_bytes", memory, memory_mb),
                           ("pids.max", str(max_processes), max_processes),
                           ("cpu.cfs_period_us", str(CPU_PERIOD_US), cpus), ("cpu.cfs_quota_us", str(quota), cpus)]}[kind]
        try:
            for folder in group.folders:
                folder.mkdir()
            for file, value, wanted in settings:
                if wanted > 0:
                    for folder in group.folders:
                        if (folder / file).exists():
                            (folder / file).write_text(value)
        except OSError:
            group.remove()
            return None
        return group

    def cpu_seconds(self) -> float | None:
        """The CPU time all of the cgroup's processes have used so far (those gone included), or None where no
        controller counts it (v1 without ``cpuacct``)."""
        for folder in self.folders:
            try:
                if (folder / "cpuacct.usage").exists():
                    return int((folder / "cpuacct.usage").read_text()) / 1e9
                if (folder / "cpu.stat").exists():
                    for line in (folder / "cpu.stat").read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "usage_usec":
                            return int(value) / 1e6
            except (OSError, ValueError):
                return None
        return None

    def thread_ids(self) -> list[int]:
        """The threads now in the cgroup, as this machine's /proc names them."""
        for name in ("cgroup.threads", "tasks"):
            try:
                return [int(tid) for tid in (self.folders[0] / name).read_text().split()]
            except FileNotFoundError:
                continue
            except (OSError, ValueError):
                return []
        return []

    def join(self) -> None:
        """Move the calling process into this cgroup (run in the child before it execs the sandbox)."""
        for folder in self.folders:
            with open(folder / "cgroup.procs", "w") as procs:
                procs.write(str(os.getpid()))

    def remove(self) -> None:
        """Remove the cgroup once its processes are gone (they die with the sandbox; allow them a moment)."""
        for folder in self.folders:
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:   # still busy: its last processes are being torn down
                    time.sleep(0.02)


def remove_leftovers(pid: int) -> None:
    """Remove the (empty) cgroups a grading process ``pid`` made, after it was killed before it could."""
    kind, where = _layout()
    parents = [where] if kind == "v2" else list(where.values()) if kind == "v1" else []
    for parent in parents:
        for folder in parent.glob(f"simclr-sandbox-{pid}-*"):
            SandboxCgroup([folder]).remove()


