"""The course's nbgrader_config.py: nbgrader's commands and the formgrader read it without warnings."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.grade import course_config
from autograder.course.nbgrader_commands import nbgrader

ROOT = Path(__file__).resolve().parent.parent
ROOT_WARNING = "is not absolute"


@pytest.fixture
def course(tmp_path: Path, monkeypatch) -> Path:
    """A fresh course root with the course's config and no exchange yet."""
    monkeypatch.delenv("NBGRADER_EXCHANGE", raising=False)
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    return tmp_path


def plain_nbgrader(args: list[str], root: Path) -> subprocess.CompletedProcess:
    """``nbgrader ARGS`` typed in the course root (as the README's plain nbgrader commands are)."""
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


def test_nbgrader_commands_do_not_warn_about_the_root_or_the_exchange(course: Path):
    for result in (plain_nbgrader(["db", "student", "list"], course), nbgrader(["db", "student", "list"], course),
                   plain_nbgrader(["list"], course)):
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert ROOT_WARNING not in output, output
        assert "Unwritable directory" not in output and "exchange" not in output.lower(), output


def test_the_formgrader_finds_the_exchange_in_the_course_root(course: Path, monkeypatch):
    monkeypatch.chdir(course)   # where the instructor starts jupyter lab
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    config = course_config(course)
    api = NbGraderAPI(CourseDirectory(config=config), config=config)
    assert api.coursedir.root == str(course)
    assert not api.exchange_missing and api.exchange_is_functional, "the formgrader would warn about the exchange"
    assert api.exchange_root == str(course / "exchange")


def test_a_hub_exchange_is_taken_from_the_environment(course: Path, tmp_path_factory, monkeypatch):
    shared = tmp_path_factory.mktemp("shared-exchange")
    monkeypatch.setenv("NBGRADER_EXCHANGE", str(shared))
    assert course_config(course).Exchange.root == str(shared)
    assert not (course / "exchange").exists(), "a course-local exchange was made although one was given"
