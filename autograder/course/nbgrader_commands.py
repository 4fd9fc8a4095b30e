"""The course's folders and nbgrader's command line: ``nbgrader(args)`` runs ``python -m nbgrader`` in the
course, ``generate_release`` makes ``release/<assignment>``, ``zip_release`` its zip for Colab."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

COURSE_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ASSIGNMENT = "simclr"


def scripts_first_on_path() -> None:
    """nbgrader runs ``alembic`` as a program (creating or opening a gradebook): find this interpreter's."""
    scripts = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != scripts:
        os.environ["PATH"] = os.pathsep.join([scripts, os.environ.get("PATH", "")])


def nbgrader(args: list[str], course_root: Path = COURSE_ROOT) -> subprocess.CompletedProcess:
    """Run an nbgrader command in ``course_root`` (whose nbgrader_config.py it reads) with this Python.

    nbgrader starts ``alembic`` as a program when it creates a gradebook, so the folder of this
    interpreter's scripts goes first on PATH: the command works without activating the virtual environment.
    """
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return subprocess.run([sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course_root}"],
                          cwd=course_root, env=env, capture_output=True, text=True)


def generate_release(assignment: str = DEFAULT_ASSIGNMENT, course_root: Path = COURSE_ROOT,
                     extra: list[str] = ()) -> Path:
    """Generate ``release/<assignment>`` from ``source/<assignment>``; raise with nbgrader's log if it fails."""
    result = nbgrader(["generate_assignment", assignment, "--force", *extra], course_root)
    release = course_root / "release" / assignment
    if result.returncode != 0 or not release.is_dir():
        raise RuntimeError(f"nbgrader generate_assignment {assignment} failed:\n{result.stdout}\n{result.stderr}")
    return release


def zip_release(release: Path, archive: Path) -> Path:
    """``release`` (a folder) as a zip whose entries start with the folder's name; caches left out."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(release.rglob("*")):
            if path.is_file() and not {"__pycache__", ".ipynb_checkpoints", ".hypothesis"} & set(path.parts):
                out.write(path, Path(release.name) / path.relative_to(release))
    return archive
