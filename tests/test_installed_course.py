"""The course installed as a package (``pip install .``, not editable): none of its own code reaches a student.

A non-editable install puts ``autograder`` (hidden checks included), ``reference`` and ``bench`` into
site-packages, which the grading sandbox binds. The test installs the course that way into a fresh virtual
environment (third-party packages come from this one, through a ``.pth`` file), then lets a student process
look for it; run with the hiding switched off, the same search finds it.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIND_THE_COURSE = '''
import importlib, os, sys

def nt_xent(z_i, z_j, temperature=0.5):
    found = []
    for module in ("reference.loss", "autograder.checks.hidden_checks", "autograder.checks.loss_checks", "bench.run"):
        try:
            importlib.import_module(module)
            found.append(module)
        except Exception:
            pass
    for folder in [p for p in sys.path if p.endswith("-packages")]:
        for top, dirs, files in os.walk(folder):
            for name in ("hidden_checks.py", "plugin.py", "loss.py", "RECORD"):
                path = os.path.join(top, name)
                if name in files and os.path.getsize(path) and "nt_xent" in open(path, errors="replace").read():
                    found.append(path)
    return torch.tensor(float(len(found)))
'''
SCRIPT = textwrap.dedent('''
    import sys, torch
    import autograder
    from autograder.boundary import isolation
    from autograder.boundary.sandbox import Limits, Sandbox
    assert "/site-packages/autograder" in autograder.__file__, autograder.__file__
    if sys.argv[1] == "unhidden":
        isolation.course_files = lambda: ()
    limits = Limits(check_timeout_s=120, startup_timeout_s=60, memory_mb=2048)
    with Sandbox([("nt_xent", sys.stdin.read())], limits) as sandbox:
        found = sandbox.run("nt_xent", z_i=torch.ones(2, 3), z_j=torch.ones(2, 3), temperature=0.5)["loss"]
    print("FOUND", int(found.item()))
''')


@pytest.fixture(scope="module")
def installed_python(tmp_path_factory) -> Path:
    """The python of a new virtual environment where the course is installed as a wheel installs it."""
    scratch = tmp_path_factory.mktemp("installed")
    source = scratch / "source"
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name) if source.exists() else (source.mkdir(), shutil.copy(ROOT / name, source))
    for folder in ("autograder", "reference", "bench", "source/simclr/simclr_helpers"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    venv = scratch / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "course-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet",
                    "--target", str(site), str(source)], check=True)
    assert (site / "autograder" / "checks" / "hidden_checks.py").is_file() and (site / "reference" / "loss.py").is_file()
    return python


def _found(python: Path, mode: str) -> int:
    result = subprocess.run([str(python), "-c", SCRIPT, mode], input=FIND_THE_COURSE, capture_output=True, text=True,
                            cwd="/", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return int(result.stdout.split("FOUND")[-1])


def test_an_installed_course_is_neither_importable_nor_readable_in_the_sandbox(installed_python):
    assert _found(installed_python, "hidden") == 0


def test_without_the_hiding_the_student_finds_it(installed_python):
    assert _found(installed_python, "unhidden") > 0
