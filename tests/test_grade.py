"""The batch command on a real nbgrader gradebook: hand-graded answers survive a regrade, feedback when asked."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import nbformat
from nbformat.v4 import new_output
import pytest
from nbgrader.api import Gradebook

import attacks
from autograder.course.examples import filled_release, solutions
import autograder.grade
from autograder.grade import ASSIGNMENT, NOTEBOOK, grade, main, print_table
from autograder.boundary.sandbox import Limits

ROOT = Path(__file__).resolve().parent.parent
LIMITS = Limits(check_timeout_s=5, startup_timeout_s=10, memory_mb=2048, sandbox=attacks.sandbox_mode())
STUDENT = "writer"   # the release with the written answers only: its checks fail at once (a short test)
UNREAD = "unread"    # the same, but nobody hand-grades it


def cells(kind: str) -> list[str]:
    """grade_ids of the source notebook's graded cells of one kind ("markdown": the written answers)."""
    return [c.metadata.nbgrader["grade_id"] for c in nbformat.read(ROOT / "source" / "simclr" / f"{NOTEBOOK}.ipynb",
                                                                   as_version=4).cells
            if c.cell_type == kind and c.metadata.get("nbgrader", {}).get("grade")]


def written_answers_only(answers: dict[str, str] | None = None) -> str:
    """The release with every written answer filled in (an unchanged answer is scored 0 by nbgrader itself), and
    the code ``answers`` (grade_id -> source) if given."""
    nb = nbformat.reads(json.dumps(filled_release(answers or {})), as_version=4)
    first_answer = True
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("grade"):
            cell.source = "The run without colour jitter lost the most accuracy."
            if first_answer:  # the exercise cell above it, as the student ran it
                exercise = next(c for c in reversed(nb.cells[:index]) if c.cell_type == "code")
                exercise.outputs = EXERCISE_OUTPUTS
                first_answer = False
        elif cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
            cell.outputs = [new_output("stream", name="stdout", text="passed, trust me\n")]
    return nbformat.writes(nb)


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
EXERCISE_OUTPUTS = [
    new_output("stream", name="stdout", text="run              probe\nno colour jitter 45.2 %\n"),
    new_output("stream", name="stderr", text="100%|##########| 3/3 [00:01<00:00]\n"),
    new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure size 640x480>"}),
    new_output("display_data", data={"text/html": "<script>steal(document.cookie)</script>",
                                     "image/svg+xml": "<svg onload='steal()'/>"}),
]


def hand_grade(db_url: str, student: str, score: float) -> None:
    """Score every written answer of ``student`` as the formgrader's "save" does (nbgrader's GradeHandler.put)."""
    with Gradebook(db_url) as gradebook:
        for grade_id in cells("markdown"):
            cell = gradebook.find_grade(grade_id, NOTEBOOK, ASSIGNMENT, student)
            cell.manual_score = score
            cell.needs_manual_grade = False
        gradebook.db.commit()


def gradebook_view(db_url: str, student: str) -> dict:
    """What the formgrader reads for one submission: its flag, its score, each cell's scores and flag."""
    with Gradebook(db_url) as gradebook:
        submission = gradebook.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student)
        return {"needs_manual_grade": gradebook.find_submission(ASSIGNMENT, student).needs_manual_grade,
                "score": submission.score,
                "cells": {g.name: (g.auto_score, g.manual_score, g.needs_manual_grade) for g in submission.grades}}


@pytest.fixture(scope="module")
def regraded(tmp_path_factory):
    """Grade two submissions, hand-grade one's written answers as the formgrader does, grade again with feedback
    (the hand-graded student's projection head now correct); then change one of its written answers and regrade."""
    root = tmp_path_factory.mktemp("course")
    db_url = f"sqlite:///{root / 'gradebook.db'}"
    shutil.copytree(ROOT / "source", root / "source", ignore=shutil.ignore_patterns(".hypothesis", "__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", root)
    (root / "incoming").mkdir()
    for student in (STUDENT, UNREAD):
        (root / "incoming" / f"{student}.ipynb").write_text(written_answers_only())
    first = grade(root / "incoming", root=root, workers=1, limits=LIMITS)[STUDENT]
    feedback_after_first = sorted(p.name for p in (root / "feedback").rglob("*.html"))
    hand_grade(db_url, STUDENT, 1.5)
    (root / "incoming" / f"{STUDENT}.ipynb").write_text(
        written_answers_only({"ProjectionHead": solutions()["ProjectionHead"]}))
    warnings = io.StringIO()
    with contextlib.redirect_stderr(warnings):
        rows = grade(root / "incoming", root=root, workers=1, limits=LIMITS, feedback=True)
    second = rows[STUDENT]
    regrade = {"rows": rows, "warnings": warnings.getvalue(), "root": root,
               "feedback": Path(second.feedback).read_text() if second.feedback else "",
               "view": {s: gradebook_view(db_url, s) for s in (STUDENT, UNREAD)}}
    with Gradebook(db_url) as gradebook:   # a test cell's score overridden in the formgrader
        override = gradebook.find_grade("test_get_augmentations", NOTEBOOK, ASSIGNMENT, STUDENT)
        override.manual_score, override.needs_manual_grade = 0.5, False
        gradebook.db.commit()
    tidied = solutions()["ProjectionHead"] + "\n# tidied up\n"   # a code answer changed: the override needs review
    changed = nbformat.reads(written_answers_only({"ProjectionHead": tidied}), as_version=4)
    answer = next(c for c in changed.cells if c.metadata.get("nbgrader", {}).get("grade_id") == cells("markdown")[0])
    answer.source = "On second thought: the run without crops lost the most."
    (root / "incoming" / f"{STUDENT}.ipynb").write_text(nbformat.writes(changed))
    (root / "incoming" / f"{UNREAD}.ipynb").unlink()
    with contextlib.redirect_stderr(io.StringIO()) as later_warnings:
        third = grade(root / "incoming", root=root, workers=1, limits=LIMITS, feedback=True)[STUDENT]
    resubmitted = {"row": third, "warnings": later_warnings.getvalue(), "view": gradebook_view(db_url, STUDENT)}
    return first, feedback_after_first, second, regrade, resubmitted


def test_written_answers_are_pending_until_hand_graded_and_stay_graded_after_a_regrade(regraded, capsys):
    first, _, second, regrade, _ = regraded
    assert first.status == second.status == "graded", (first.error, second.error)
    written = len(cells("markdown"))
    assert written == 3 and first.manual_pending == written
    assert second.manual_pending == 0, "the regrade counts hand-graded answers as still to do"
    code = sum(c["points"] or 0 for c in second.cells.values())
    assert code > 0, "the regrade did not update the autograded cells (the projection head is correct now)"
    assert second.score == pytest.approx(1.5 * written + code), "the hand-graded scores did not survive the regrade"
    print_table({STUDENT: second})
    assert re.search(rf"{STUDENT}\s+graded\s+{code:g}/22\s+0 todo", capsys.readouterr().out)
    assert regrade["rows"][UNREAD].manual_pending == written


def test_the_formgrader_shows_hand_graded_cells_as_graded_after_a_regrade(regraded):
    _, _, _, regrade, _ = regraded
    view, unread = regrade["view"][STUDENT], regrade["view"][UNREAD]
    for grade_id in cells("markdown"):
        assert view["cells"][grade_id] == (None, 1.5, False), ("the regrade lost the hand grade, or shows it as "
                                                               "needing a manual grade", view["cells"][grade_id])
        assert unread["cells"][grade_id] == (None, None, True), unread["cells"][grade_id]
    assert view["needs_manual_grade"] is False and unread["needs_manual_grade"] is True
    assert view["cells"]["test_projection_head"][0] > 0 and unread["cells"]["test_projection_head"][0] == 0, \
        "the regrade did not update the auto scores"
    code = sum(auto for auto, _, _ in view["cells"].values() if auto)
    assert view["score"] == pytest.approx(1.5 * len(cells("markdown")) + code)


def test_feedback_skips_students_whose_written_answers_are_pending(regraded):
    _, _, second, regrade, _ = regraded
    assert second.feedback and regrade["feedback"]
    assert not regrade["rows"][UNREAD].feedback
    assert not list((regrade["root"] / "feedback").glob(f"{UNREAD}/**/*.html")), "feedback of unread answers"
    warning = regrade["warnings"]
    assert "no feedback for 1 student" in warning and UNREAD in warning and "--feedback-with-pending" in warning, \
        warning
    assert STUDENT not in warning.split("no feedback for", 1)[1]


def test_a_written_answer_changed_after_hand_grading_needs_a_manual_grade_again(regraded):
    _, _, _, _, resubmitted = regraded
    first_answer, *others = cells("markdown")
    view = resubmitted["view"]
    assert view["cells"][first_answer] == (None, 1.5, True), view["cells"][first_answer]
    assert all(view["cells"][g] == (None, 1.5, False) for g in others), view["cells"]
    assert view["cells"]["test_get_augmentations"] == (0.0, 0.5, True), "an override of a changed answer was kept"
    assert resubmitted["row"].manual_pending == 2 and not resubmitted["row"].feedback
    assert STUDENT in resubmitted["warnings"]


def test_feedback_only_when_asked_and_every_graded_cell_named(regraded):
    first, feedback_after_first, second, regrade, _ = regraded
    assert not first.feedback and not feedback_after_first, "feedback was written before anyone asked for it"
    html = regrade["feedback"]
    toc = html.split('<div id="toc">', 1)[1].split("</div>", 1)[0]
    for grade_id in cells("code") + cells("markdown"):
        assert f"<code>{grade_id}</code>" in toc, f"the feedback's list of cells does not name {grade_id}"
    assert "Score: 1.5 / 2.0" in toc
    assert "BEGIN HIDDEN TESTS" not in html and "run_in_kernel" not in html


def test_the_exercise_tables_reach_the_hand_grader_and_nothing_that_runs(regraded):
    copies = list(regraded[3]["root"].rglob(f"autograded/{STUDENT}/{ASSIGNMENT}/{NOTEBOOK}.ipynb"))
    assert len(copies) == 1, copies
    nb = nbformat.read(copies[0], as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" and not c.metadata.get("nbgrader", {}).get("grade")
               for o in c.get("outputs", [])]
    assert [o.get("text") for o in outputs if o.output_type == "stream"] == ["run              probe\nno colour jitter 45.2 %\n"]
    kinds = {key for o in outputs if o.output_type == "display_data" for key in o.data}
    assert kinds == {"image/png", "text/plain"}, kinds
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
            assert all("trust me" not in str(o) for o in cell.outputs), "a test cell kept the student's output"


def test_the_nbgrader_steps_print_no_root_or_exchange_warning(regraded):
    logs = sorted((regraded[3]["root"] / "grades").glob("nbgrader-*.log"))
    assert [p.name for p in logs] == ["nbgrader-autograde.log", "nbgrader-generate_feedback.log"]
    for log in logs:
        text = log.read_text()
        assert "is not absolute" not in text and "exchange" not in text.lower(), text[:2000]


@pytest.mark.parametrize("flags, feedback, with_pending", [([], False, False), (["--feedback"], True, False),
                                                          (["--feedback-with-pending"], True, True)])
def test_the_command_line_asks_for_feedback_with_or_without_pending_students(monkeypatch, flags, feedback,
                                                                             with_pending):
    calls = []
    monkeypatch.setattr(autograder.grade, "grade", lambda *args: calls.append(args) or {})
    main(flags)
    (args,) = calls
    assert (args[7], args[9]) == (feedback, with_pending)
