"""A submission cannot take another student's row (issue 19, item F): files that become the same student id,
symbolic links, odd folder names, notebooks nbgrader fails on, and nbgrader's own per-student failures.

The batch tests grade for real in a course folder in tmp_path (as tests/test_grade.py does) with few, fast
submissions: the released notebook unchanged (its checks fail at once) and, where a full score matters, the
solutions. The unit tests read the submissions folder and the notebooks only.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

import attacks
import autograder.grade
from autograder.nbgrader_ext import autograde_outcome
from autograder.course.examples import filled_release, solutions
from autograder.grade import excluded_students, grade
from autograder.course.precheck import AssignmentCells, precheck
from autograder.boundary.sandbox import Limits
from autograder.course.submissions import ASSIGNMENT, NOTEBOOK, ORIGIN, collect

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
LIMITS = Limits(check_timeout_s=5, startup_timeout_s=10, memory_mb=2048, sandbox=attacks.sandbox_mode())
FULL = 28.0   # 22 points of test cells and 6 of written answers: what every graded row's max_score must be


def new_course(base: Path) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "source", base / "source", ignore=shutil.ignore_patterns(".hypothesis", "__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", base)
    return base


def released() -> dict:
    return json.loads(RELEASE.read_text())


def grade_id(cell: dict) -> str | None:
    return cell["metadata"].get("nbgrader", {}).get("grade_id")


def with_extra_test_cell(new_id: str, at_end: bool = True) -> dict:
    """The release with a copy of the test cell test_nt_xent worth 100 points under ``new_id``."""
    nb = released()
    index = next(i for i, c in enumerate(nb["cells"]) if grade_id(c) == "test_nt_xent")
    extra = copy.deepcopy(nb["cells"][index])
    extra.pop("id", None)
    extra["metadata"]["nbgrader"].update(points=100, grade_id=new_id)
    nb["cells"].insert(len(nb["cells"]) if at_end else index + 1, extra)
    return nb


def without(*grade_ids: str) -> dict:
    nb = released()
    nb["cells"] = [c for c in nb["cells"] if grade_id(c) not in grade_ids]
    return nb


def edited(grade_id_: str, replace=None, **meta) -> dict:
    """The release with the nbgrader metadata of one cell updated with ``meta`` (or replaced by ``replace``)."""
    nb = released()
    for cell in nb["cells"]:
        if grade_id(cell) == grade_id_:
            cell["metadata"]["nbgrader"] = replace if replace is not None else {**cell["metadata"]["nbgrader"], **meta}
    return nb


def write(path: Path, nb: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1))
    return path


def files_under(folder: Path) -> list[Path]:
    return [Path(top) / name for top, _, names in os.walk(folder) for name in names]


def gradebook_students(root: Path) -> set[str]:
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        return {s.student.id for s in gradebook.find_assignment(ASSIGNMENT).submissions}


def source_cells() -> AssignmentCells:
    """The cells of the source notebook, in its order (generate_assignment writes them to the gradebook so)."""
    nb = nbformat.read(ROOT / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    meta = [c.metadata.nbgrader for c in nb.cells if "nbgrader" in c.metadata]
    return AssignmentCells(tuple(m["grade_id"] for m in meta), tuple(m["grade_id"] for m in meta if m.get("grade")))


# --- one plain-folder batch, shared -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plain_batch(tmp_path_factory):
    """victim.ipynb (solutions) with victim_.ipynb next to it, a link to the source notebook, extra test cells, a
    cell of another metadata schema (which stops nbgrader's whole run) before an honest student, ann."""
    root = new_course(tmp_path_factory.mktemp("plain"))
    incoming = root / "incoming"
    write(incoming / "victim.ipynb", filled_release(solutions()))
    write(incoming / "victim_.ipynb", released())
    write(incoming / "ann.ipynb", released())
    (incoming / "link.ipynb").symlink_to(root / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    write(incoming / "dup_id.ipynb", with_extra_test_cell("test_nt_xent"))
    write(incoming / "new_id.ipynb", with_extra_test_cell("test_extra"))
    write(incoming / "a_schema.ipynb", edited("test_nt_xent", schema_version=4))
    rows = grade(incoming, root=root, workers=1, limits=LIMITS)
    return root, rows


def test_files_that_become_one_student_id_are_all_refused(plain_batch):
    root, rows = plain_batch
    for name in ("victim.ipynb", "victim_.ipynb"):
        assert rows[name].status == "error", rows[name]
        assert "victim.ipynb and victim_.ipynb" in rows[name].error and "none of them was graded" in rows[name].error
    assert "victim" not in rows, "a row was written for the student both files claim"
    assert "victim" not in gradebook_students(root) and not (root / "submitted" / "victim").exists()
    assert not (root / "grades" / "checks" / "victim.json").exists()


def test_the_other_students_of_the_batch_are_graded(plain_batch):
    _, rows = plain_batch
    assert rows["ann"].status == "graded", rows["ann"].error
    assert rows["ann"].max_score == FULL and len(rows["ann"].cells) == 13   # 12 test cells and the self-check (0)


def test_a_symlinked_notebook_is_refused_and_never_copied(plain_batch):
    root, rows = plain_batch
    assert rows["link.ipynb"].status == "error" and "symbolic link" in rows["link.ipynb"].error
    assert "link" not in rows and "link" not in gradebook_students(root)
    source = (root / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb").read_bytes()
    copies = [p for p in files_under(root / "submitted") + files_under(root / "autograded")
              if "BEGIN SOLUTION" in p.read_text(errors="replace") or p.read_bytes() == source]
    assert not copies, f"the source notebook reached {copies}"


def test_extra_test_cells_are_refused_before_grading(plain_batch):
    root, rows = plain_batch
    duplicate, unknown = rows["dup_id"], rows["new_id"]
    assert duplicate.status == unknown.status == "error"
    assert "both have nbgrader's grade_id 'test_nt_xent'" in duplicate.error
    assert "grade_id 'test_extra'" in unknown.error and "no cell of this assignment" in unknown.error
    assert not {"dup_id", "new_id"} & gradebook_students(root)
    assert all(row.max_score in (0.0, FULL) for row in rows.values())


def test_metadata_that_would_stop_nbgrader_for_everyone_is_refused(plain_batch):
    _, rows = plain_batch
    assert rows["a_schema"].status == "error" and "Schema version is too new" in rows["a_schema"].error
    assert rows["ann"].status == "graded"   # nbgrader grades in name order: a_schema would have stopped it before ann


# --- nbgrader failing for one student --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nbgrader_fails(plain_batch):
    """A second batch in the same course with the precheck switched off: ann (graded by the first batch) now sends
    the extra test cell with test_nt_xent's grade_id, new_id one with a new grade_id; bob is honest."""
    root, first = plain_batch
    incoming = root / "incoming-2"
    write(incoming / "ann.ipynb", with_extra_test_cell("test_nt_xent"))
    write(incoming / "new_id.ipynb", with_extra_test_cell("test_extra"))
    write(incoming / "bob.ipynb", released())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(autograder.grade, "precheck", lambda path, cells: "")
        rows = grade(incoming, root=root, workers=1, limits=LIMITS)
    return root, first, rows


def test_a_student_nbgrader_fails_on_gets_its_message_not_an_earlier_grade(nbgrader_fails):
    root, first, rows = nbgrader_fails
    assert first["ann"].status == "graded"
    for student in ("ann", "new_id"):
        assert rows[student].status == "error", (student, rows[student])
        assert "nbgrader autograde failed" in rows[student].error and "KeyError: 'grade_id'" in rows[student].error
        assert str(root / "grades" / "nbgrader-autograde.log") in rows[student].error
    assert rows["bob"].status == "graded" and rows["bob"].max_score == FULL


def test_nbgrader_does_not_count_an_extra_test_cell(nbgrader_fails):
    """nbgrader 0.9.6 rejects both extra cells (DeduplicateIds strips the first of two cells of one grade_id and
    OverwriteCells the grade_id of a cell it does not know, then add_missing_cells fails on them): no score of 100."""
    root, _, rows = nbgrader_fails
    assert all(row.max_score in (0.0, FULL) and row.score <= FULL for row in rows.values())
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        for student in ("ann", "bob"):   # the gradebook keeps ann's first grade and bob's, and no 100-point cell
            notebook = gradebook.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student)
            assert sum(g.max_score for g in notebook.grades) == FULL
            assert "test_extra" not in {g.name for g in notebook.grades}


# --- nbgrader's layout, graded in place -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def layout_batch(tmp_path_factory):
    """submitted/ in nbgrader's layout: carol's own notebook, mallory's folder a link to a folder holding the source
    notebook, eve's notebook a link to the source notebook."""
    root = new_course(tmp_path_factory.mktemp("layout"))
    submitted = root / "submitted"
    write(submitted / "carol" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", released())
    source = root / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    (root / "elsewhere" / ASSIGNMENT).mkdir(parents=True)
    shutil.copy(source, root / "elsewhere" / ASSIGNMENT / f"{NOTEBOOK}.ipynb")
    (submitted / "mallory").symlink_to(root / "elsewhere")
    (submitted / "eve" / ASSIGNMENT).mkdir(parents=True)
    (submitted / "eve" / ASSIGNMENT / f"{NOTEBOOK}.ipynb").symlink_to(source)
    rows = grade(submitted, root=root, workers=1, limits=LIMITS)
    return root, rows


def test_symlinked_folders_and_notebooks_in_nbgraders_layout_are_refused(layout_batch):
    root, rows = layout_batch
    assert rows["carol"].status == "graded", rows["carol"].error
    assert "mallory is a symbolic link" in rows["mallory"].error
    assert f"eve/{ASSIGNMENT}/{NOTEBOOK}.ipynb is a symbolic link" in rows["eve"].error
    for student in ("mallory", "eve"):
        assert rows[student].status == "error"
        assert not (root / "autograded" / student).exists(), f"nbgrader followed {student}'s link"
        assert not (root / "grades" / "checks" / f"{student}.json").exists(), f"{student}'s link was read"
    assert gradebook_students(root) == {"carol"}


# --- collect, without grading ---------------------------------------------------------------------------------------

def test_nbgraders_layout_copies_nothing_behind_a_link_or_under_an_odd_name(tmp_path):
    collected, elsewhere = tmp_path / "collected", tmp_path / "elsewhere"
    write(collected / "carol" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", released())
    write(elsewhere / ASSIGNMENT / f"{NOTEBOOK}.ipynb", released())
    (collected / "mallory").symlink_to(elsewhere)
    (collected / "dan").mkdir()
    (collected / "dan" / ASSIGNMENT).symlink_to(elsewhere / ASSIGNMENT)
    (collected / "eve" / ASSIGNMENT).mkdir(parents=True)
    (collected / "eve" / ASSIGNMENT / f"{NOTEBOOK}.ipynb").symlink_to(RELEASE)
    write(collected / "x,carol" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", released())
    write(collected / "[a-z]" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", released())
    found = collect(collected, tmp_path)
    assert list(found.notebooks) == ["carol"]
    assert set(found.refused) == {"mallory", "dan", "eve", "x,carol", "[a-z]"}
    assert "cannot be a student id" in found.refused["x,carol"]
    assert sorted(p.name for p in (tmp_path / "submitted").iterdir()) == ["carol"]


def test_a_plain_file_may_not_replace_a_submission_another_file_made(tmp_path):
    def batch(*names: str):
        folder = tmp_path / f"batch-{len(list(tmp_path.glob('batch-*')))}"
        for name in names:
            write(folder / name, released())
        return collect(folder, tmp_path)

    assert list(batch("victim.ipynb").notebooks) == ["victim"]
    assert (tmp_path / "submitted" / "victim" / ORIGIN).read_text() == "victim.ipynb"
    later = batch("victim_.ipynb")
    assert not later.notebooks and "made from victim.ipynb in an earlier batch" in later.refused["victim_.ipynb"]
    assert list(batch("victim.ipynb").notebooks) == ["victim"], "the same file could not regrade its student"
    write(tmp_path / "submitted" / "zed" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", released())   # nbgrader's layout
    assert "zed_.ipynb" in batch("zed_.ipynb").refused
    assert list(batch("zed.ipynb").notebooks) == ["zed"]


def test_plain_files_that_are_not_regular_files_are_refused(tmp_path):
    incoming, outside = tmp_path / "incoming", tmp_path / "outside"
    outside.mkdir()
    write(incoming / "ann.ipynb", released())
    os.mkfifo(incoming / "pipe.ipynb")
    (incoming / "folder.ipynb").mkdir()
    (incoming / "gone.ipynb").symlink_to(tmp_path / "nowhere")
    write(incoming / "pat.ipynb", released())
    (tmp_path / "submitted").mkdir()
    (tmp_path / "submitted" / "pat").symlink_to(outside)   # left in submitted/ by someone: not written through
    found = collect(incoming, tmp_path)
    assert list(found.notebooks) == ["ann"]
    assert set(found.refused) == {"pipe.ipynb", "folder.ipynb", "gone.ipynb", "pat.ipynb"}
    assert not list(outside.iterdir())


# --- the precheck and nbgrader's log, without grading ---------------------------------------------------------------

@pytest.mark.parametrize("name, nb, expected", [
    ("copied test cell, at the end", lambda: with_extra_test_cell("test_nt_xent"), "both have nbgrader's grade_id"),
    ("copied test cell, next to it", lambda: with_extra_test_cell("test_nt_xent", at_end=False), "both have"),
    ("extra test cell", lambda: with_extra_test_cell("test_extra"), "grade_id 'test_extra', which is no cell"),
    ("another schema", lambda: edited("test_nt_xent", schema_version=1), "Outdated schema version"),
    ("points not a number", lambda: edited("test_nt_xent", points="lots"), "'lots' is not of type 'number'"),
    ("no grade_id", lambda: edited("nt_xent", replace={"schema_version": 3, "grade": False, "solution": False,
                                                       "locked": False}), "no grade_id"),
    ("metadata a string", lambda: edited("nt_xent", replace="nt_xent"), "not a dictionary"),
    ("answer and test cell deleted", lambda: without("nt_xent", "test_nt_xent"), "'nt_xent' and the graded cell"),
])
def test_the_precheck_names_what_nbgrader_would_fail_on(tmp_path, name, nb, expected):
    problem = precheck(write(tmp_path / "x.ipynb", nb()), source_cells())
    assert expected in problem and "not graded" in problem, (name, problem)


@pytest.mark.parametrize("name, nb", [
    ("release", released), ("solutions", lambda: filled_release(solutions())),
    ("test cells deleted (nbgrader puts them back)", lambda: without("test_nt_xent", "test_nt_xent_formula_hidden")),
    ("test cell worth 100 points (nbgrader restores its points)", lambda: edited("test_nt_xent", points=100)),
])
def test_the_precheck_accepts_what_nbgrader_grades(tmp_path, name, nb):
    assert precheck(write(tmp_path / "x.ipynb", nb()), source_cells()) == "", name


STOPPED_LOG = """\
[AutogradeApp | INFO] Sanitizing /c/submitted/a_schema/simclr/simclr_lab.ipynb
[AutogradeApp | WARNING] Removing failed assignment: /c/autograded/a_schema/simclr
[AutogradeApp | ERROR] One or more notebooks in the assignment use an newer version
    of the nbgrader metadata format. Please update your version of
    nbgrader to the latest version to be able to use this notebook.
"""
FAILED_LOG = """\
[AutogradeApp | ERROR] There was an error processing assignment: /c/submitted/dup/simclr
[AutogradeApp | ERROR] Traceback (most recent call last):
      File "nbgrader/preprocessors/overwritecells.py", line 159, in add_missing_task_cells
        submitted_ids = [cell["metadata"]["nbgrader"]["grade_id"] for cell in nb.cells if
    KeyError: 'grade_id'
/x/nbformat/validator.py:434: MissingIDFieldWarning: Cell is missing an id field
  _validate(nbdict, ref, version, version_minor, relax_add_props)
[AutogradeApp | WARNING] Removing failed assignment: /c/autograded/dup/simclr
[AutogradeApp | ERROR] There was an error processing assignment 'simclr' for student 'dup'
"""


def test_students_nbgrader_did_not_autograde_in_this_run_are_found(tmp_path):
    old, new = "old", "new"
    for student in (old, new):
        write(autograde_outcome.autograded_copy(tmp_path, student), {})
    before = autograde_outcome.before_autograde(tmp_path, [old, new, "dup", "never"])
    rewritten = write(autograde_outcome.autograded_copy(tmp_path, new), {"rewritten": True})
    later = os.stat(rewritten).st_mtime_ns + 10**9   # as nbgrader writes it, seconds after the earlier batch
    os.utime(rewritten, ns=(later, later))
    failed = autograde_outcome.failures(tmp_path, before, FAILED_LOG)
    assert failed == {"old": "nbgrader wrote no autograded notebook for it", "dup": "KeyError: 'grade_id'",
                      "never": "nbgrader wrote no autograded notebook for it"}
    stopped = autograde_outcome.failures(tmp_path, before, STOPPED_LOG)
    assert stopped["old"].startswith("nbgrader stopped before grading it: One or more notebooks") and "new" not in stopped


def test_nbgrader_skips_every_other_folder_and_no_name_next_to_a_comma(tmp_path):
    for name in ("carol", "dave", "x,carol", "mallory"):
        (tmp_path / name).mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "dave")
    assert excluded_students(tmp_path, ["carol", "mallory"]) == ["dave", "link"]
