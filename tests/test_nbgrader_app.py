"""nbgrader's commands in the grading process (autograder/nbgrader_ext/app.py), feedback in groups of students at once, by
the course's FeedbackExporter: the same files, gradebook and log as nbgrader's own processes with nbconvert's
HTMLExporter."""
from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

import autograder.grade
import autograder.nbgrader_ext.app
from autograder.course.examples import filled_release, solutions
from autograder.grade import (ASSIGNMENT, NOTEBOOK, _feedback_commands, feedback_options,
                              feedback_template_options)
from autograder.checks.grading import answer_cells, digest
from autograder.nbgrader_ext.app import run_nbgrader, run_nbgrader_at_once
from autograder.checks.registry import GRADE_IDS
from autograder.course.nbgrader_commands import nbgrader

ROOT = Path(__file__).resolve().parent.parent
STUDENTS = ("ann", "bob", "cy", "dee", "eve", "fay")


def submission(index: int) -> nbformat.NotebookNode:
    """The release with the solutions (even students) or untouched, and a written answer of one's own."""
    nb = nbformat.reads(json.dumps(filled_release(solutions() if index % 2 == 0 else {})), as_version=4)
    answer = next(c for c in nb.cells if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("solution"))
    answer.source = f"Student {index}: the run without colour jitter lost the most accuracy ($\\tau = 0.2$)."
    return nb


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """A course with the assignment generated and six submissions whose checks' results are written ahead."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(ROOT / "source", root / "source", ignore=shutil.ignore_patterns(".hypothesis", "__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", root)
    checks = root / "grades" / "checks"
    checks.mkdir(parents=True)
    for index, student in enumerate(STUDENTS):
        nb = submission(index)
        path = root / "submitted" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
        results = {g: {"grade_id": g, "passed": i % 3 != index % 3, "message": f"check {i}", "seconds": 0.1 * i}
                   for i, g in enumerate(GRADE_IDS)}
        (checks / f"{student}.json").write_text(json.dumps({"digest": digest(answer_cells(nb)), "results": results}))
    done = nbgrader(["generate_assignment", ASSIGNMENT, "--force"], root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def commands(root: Path, nbconverts_exporter: bool = False) -> tuple[list[str], list[str]]:
    """autograde and generate_feedback as grade runs them, or, ``nbconverts_exporter``, with nbconvert's own
    HTMLExporter in place of the course's ``FeedbackExporter`` (as before it)."""
    common = [f"--TrustedChecks.results_directory={root / 'grades' / 'checks'}"]
    options = feedback_template_options() if nbconverts_exporter else feedback_options()
    return (["autograde", ASSIGNMENT, "--force", *common],
            ["generate_feedback", ASSIGNMENT, "--force", *common, *options])


def graded_copy(generated: Path, name: str) -> Path:
    root = generated.parent / f"{generated.name}-{name}"
    shutil.copytree(generated, root)
    return root


@pytest.fixture(scope="module")
def by_processes(generated) -> Path:
    """Autograde and feedback as before: nbgrader's own processes, nbconvert's own HTMLExporter."""
    root = graded_copy(generated, "processes")
    for command in commands(root, nbconverts_exporter=True):
        done = nbgrader(command, root)
        assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def in_process(generated) -> tuple[Path, list[list[str]], dict]:
    """Autograde in this process, then feedback in two groups of students at once."""
    root = graded_copy(generated, "in-process")
    autograde, feedback = commands(root)
    cwd, path = os.getcwd(), list(sys.path)
    done = run_nbgrader(autograde, root)
    assert done.returncode == 0, done.stderr[-3000:]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(autograder.grade, "FEEDBACK_GROUP_MIN", 3)
        groups = _feedback_commands(feedback, root, processes=4)
    done = run_nbgrader_at_once(groups, root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, groups, {"cwd": os.getcwd() == cwd, "path": sys.path == path, "log": done.stderr}


def files(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o777)
            for folder in ("autograded", "feedback", "graded_answers") for p in sorted((root / folder).rglob("*"))
            if p.is_file()}


def gradebook(root: Path) -> dict:
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as book:
        return {student: [(g.name, g.auto_score, g.manual_score, g.needs_manual_grade, g.max_score)
                          for g in book.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student).grades] +
                         [(c.name, c.auto_comment, c.manual_comment)
                          for c in book.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student).comments]
                for student in STUDENTS}


def test_in_process_and_in_groups_nbgrader_writes_what_its_own_processes_write(by_processes, in_process):
    root, groups, _ = in_process
    assert any(o.endswith("FeedbackExporter") for o in groups[0]) and \
        not any("FeedbackExporter" in o for o in commands(by_processes, nbconverts_exporter=True)[1])
    assert len(groups) == 2, "the feedback was not split into groups of students"
    before, after = files(by_processes), files(root)
    assert sorted(before) == sorted(after) and any(name.endswith(".html") for name in after)
    assert [name for name in before if before[name] != after[name]] == []
    assert gradebook(by_processes) == gradebook(root)


def test_each_feedback_group_writes_its_own_students_only(in_process, generated):
    root, groups, _ = in_process
    excluded = [set(next(a for a in c if a.startswith(autograder.grade.EXCLUDE)).split("=", 1)[1].split(","))
                for c in groups]
    written = [set(STUDENTS) - names for names in excluded]
    assert set().union(*written) == set(STUDENTS) and sum(map(len, written)) == len(STUDENTS)


def test_the_log_is_nbgrader_s_in_student_order_and_this_process_is_left_as_it_was(in_process):
    _, _, outcome = in_process
    assert outcome["cwd"] and outcome["path"], "the working folder or sys.path was not put back"
    converted = [line.split("/autograded/")[1].split("/")[0] for line in outcome["log"].splitlines()
                 if line.startswith("[GenerateFeedbackApp | INFO] Converting notebook")]
    assert converted == list(STUDENTS)


def test_a_failing_command_gives_its_status_and_nbgrader_s_log(generated):
    done = run_nbgrader(["autograde", "no_such_assignment", "--force"], generated)
    assert done.returncode == 1
    assert "[AutogradeApp | ERROR] No notebooks were matched" in done.stderr, done.stderr[-2000:]
    again = run_nbgrader(["db", "student", "list"], generated)   # nbgrader's state was reset
    assert again.returncode == 0 and again.stdout == nbgrader(["db", "student", "list"], generated).stdout


def test_inside_another_jupyter_application_a_command_runs_in_a_new_process(generated, monkeypatch):
    import autograder.course.nbgrader_commands as nbgrader_commands
    from traitlets.config import Application

    class Kernel(Application):
        pass

    started = []
    new_process = nbgrader_commands.nbgrader
    monkeypatch.setattr(nbgrader_commands, "nbgrader", lambda *args: started.append(args) or new_process(*args))
    kernel = Kernel.instance()
    try:
        done = run_nbgrader(["db", "student", "list"], generated)
        assert Kernel.instance() is kernel and Application.instance() is kernel
    finally:
        Kernel.clear_instance()
    assert done.returncode == 0 and len(started) == 1
    assert done.stdout == run_nbgrader(["db", "student", "list"], generated).stdout and len(started) == 1


def test_commands_at_once_run_one_after_the_other_while_other_threads_run(generated):
    listing = ["db", "student", "list"]
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        done = run_nbgrader_at_once([listing, listing], generated)
    finally:
        stop.set()
        other.join()
    alone = run_nbgrader(listing, generated)
    assert done.returncode == 0 and done.stdout == alone.stdout * 2


def _dies_on_the_second(args: list[str], course_root: Path):
    if "second" in args:
        os._exit(9)
    return run_nbgrader(args, course_root)


def test_a_forked_process_that_dies_gives_an_error_not_a_hang(generated, monkeypatch):
    if threading.active_count() > 1:
        pytest.skip("this process runs other threads: nothing would be forked (and the test would exit here)")
    monkeypatch.setattr(autograder.nbgrader_ext.app, "run_nbgrader", _dies_on_the_second)
    listing = ["db", "student", "list"]
    done = run_nbgrader_at_once([listing, [*listing, "second"]], generated)
    assert done.returncode == 1 and "died" in done.stderr, done


def test_feedback_stays_one_command_for_few_students_or_a_name_with_a_comma(tmp_path):
    feedback = ["generate_feedback", ASSIGNMENT, "--force"]
    for student in ("a", "b", "c", "d", "e", "f", "g", "h"):
        (tmp_path / "autograded" / student / ASSIGNMENT).mkdir(parents=True)
    assert len(_feedback_commands(feedback, tmp_path, processes=2)) == 2
    assert _feedback_commands(feedback, tmp_path, processes=1) == [feedback]
    excluding = [*feedback, f"{autograder.grade.EXCLUDE}a,b,c"]
    assert _feedback_commands(excluding, tmp_path, processes=2) == [excluding], "five students: one group"
    (tmp_path / "autograded" / "x,y" / ASSIGNMENT).mkdir(parents=True)
    assert _feedback_commands(feedback, tmp_path, processes=2) == [feedback]
