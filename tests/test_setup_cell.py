"""The notebook's setup cell: how simclr_helpers gets next to a notebook opened alone (Colab), without a kernel.

The cell runs in a fresh ``python -E -S`` (the working folder on sys.path, as in a kernel; not the virtual
environment, where this repository's simclr_helpers is installed) in an empty folder; on "Colab" a stand-in ``google.colab.files.upload`` hands over the zip the release command makes.
"""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autograder.course.nbgrader_commands import zip_release

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "release" / "simclr"
COLAB = '''
import sys, types
google, colab, files = (types.ModuleType(n) for n in ("google", "google.colab", "google.colab.files"))
files.upload = lambda: {"simclr.zip": open(ZIP, "rb").read()}
colab.files, google.colab = files, colab
sys.modules.update({"google": google, "google.colab": colab, "google.colab.files": files})
'''
AFTER = '''
import importlib.util
print("FOUND", importlib.util.find_spec("simclr_helpers").origin)
'''


def setup_cell() -> str:
    nb = json.loads((RELEASE / "simclr_lab.ipynb").read_text())
    return next("".join(c["source"]) for c in nb["cells"] if "COURSE_ZIP_URL =" in "".join(c["source"]))


def run_cell(folder: Path, before: str = "", cell: str | None = None) -> subprocess.CompletedProcess:
    code = before + (cell or setup_cell()) + AFTER
    return subprocess.run([sys.executable, "-E", "-S", "-c", code], cwd=folder, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture(scope="module")
def course_zip(tmp_path_factory) -> Path:
    return zip_release(RELEASE, tmp_path_factory.mktemp("dist") / "simclr.zip")


def test_the_release_zip_holds_the_notebook_helpers_and_config(course_zip):
    names = zipfile.ZipFile(course_zip).namelist()
    assert {"simclr/simclr_lab.ipynb", "simclr/nbgrader_config.py", "simclr/simclr_helpers/__init__.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or ".ipynb_checkpoints" in n]


def test_on_colab_the_cell_asks_for_the_zip_and_unpacks_it(course_zip, tmp_path):
    result = run_cell(tmp_path, f"ZIP = {str(course_zip)!r}\n" + COLAB)
    assert result.returncode == 0, result.stderr
    assert "Choose the assignment's zip" in result.stdout
    assert f"FOUND {tmp_path}/simclr/simclr_helpers/__init__.py" in result.stdout
    assert (tmp_path / "simclr" / "simclr_lab.ipynb").is_file()


def test_with_an_address_the_cell_downloads_and_unpacks(course_zip, tmp_path):
    cell = setup_cell().replace('COURSE_ZIP_URL = ""', f"COURSE_ZIP_URL = {course_zip.as_uri()!r}")
    result = run_cell(tmp_path, cell=cell)
    assert result.returncode == 0, result.stderr
    assert f"FOUND {tmp_path}/simclr/simclr_helpers/__init__.py" in result.stdout


def test_a_zip_without_the_helpers_is_refused_with_what_to_upload(tmp_path):
    wrong = tmp_path / "wrong.zip"
    with zipfile.ZipFile(wrong, "w") as archive:
        archive.writestr("notes.txt", "not the assignment")
    (tmp_path / "run").mkdir()
    result = run_cell(tmp_path / "run", f"ZIP = {str(wrong)!r}\n" + COLAB)
    assert result.returncode != 0 and "upload the assignment's zip (simclr.zip)" in result.stderr


def test_elsewhere_without_the_helpers_the_cell_says_what_to_do(tmp_path):
    result = run_cell(tmp_path)
    assert result.returncode != 0
    assert "put the folder simclr_helpers/ (it came with this notebook) next to the notebook" in result.stderr


def test_next_to_the_helpers_the_cell_does_nothing(tmp_path):
    result = subprocess.run([sys.executable, "-E", "-S", "-c", setup_cell() + AFTER], cwd=RELEASE,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"FOUND {RELEASE}/simclr_helpers/__init__.py"
