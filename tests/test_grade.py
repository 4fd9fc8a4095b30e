"""The batch command on a real nbgrader gradebook: hand-graded answers survive a regrade, feedback when asked."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
from nbformat.v4 import new_output
import pytest
from nbgrader.api import Gradebook

import attacks
from autograder.grade import ASSIGNMENT, NOTEBOOK, grade, print_table
from autograder.sandbox import Limits

ROOT = Path(__file__).resolve().parent.parent
LIMITS = Limits(check_timeout_s=15, startup_timeout_s=20, memory_mb=2048, sandbox=attacks.sandbox_mode())
STUDENT = "writer"   # the release with the written answers only: its checks fail at once (a short test)


def cells(kind: str) -> list[str]:
    """grade_ids of the source notebook's graded cells of one kind ("markdown": the written answers)."""
    return [c.metadata.nbgrader["grade_id"] for c in nbformat.read(ROOT / "source" / "simclr" / f"{NOTEBOOK}.ipynb",
                                                                   as_version=4).cells
            if c.cell_type == kind and c.metadata.get("nbgrader", {}).get("grade")]


def written_answers_only() -> str:
    """The release with every written answer filled in (an unchanged answer is scored 0 by nbgrader itself)."""
    nb = nbformat.read(ROOT / "release" / "simclr" / f"{NOTEBOOK}.ipynb", as_version=4)
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


@pytest.fixture(scope="module")
def regraded(tmp_path_factory):
    """Grade one submission, hand-grade its written answers through nbgrader's Gradebook API, grade it again."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(ROOT / "source", root / "source", ignore=shutil.ignore_patterns(".hypothesis", "__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", root)
    (root / "incoming").mkdir()
    (root / "incoming" / f"{STUDENT}.ipynb").write_text(written_answers_only())
    first = grade(root / "incoming", root=root, workers=1, limits=LIMITS)[STUDENT]
    feedback_after_first = sorted(p.name for p in (root / "feedback").rglob("*.html"))
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        for grade_id in cells("markdown"):
            gradebook.find_grade(grade_id, NOTEBOOK, ASSIGNMENT, STUDENT).manual_score = 1.5
        gradebook.db.commit()
    second = grade(root / "incoming", root=root, workers=1, limits=LIMITS, feedback=True)[STUDENT]
    return first, feedback_after_first, second


def test_written_answers_are_pending_until_hand_graded_and_stay_graded_after_a_regrade(regraded, capsys):
    first, _, second = regraded
    assert first.status == second.status == "graded", (first.error, second.error)
    written = len(cells("markdown"))
    assert written == 3 and first.manual_pending == written
    assert second.manual_pending == 0, "the regrade counts hand-graded answers as still to do"
    assert second.score == pytest.approx(1.5 * written), "the hand-graded scores did not survive the regrade"
    print_table({STUDENT: second})
    assert re.search(rf"{STUDENT}\s+graded\s+0/22\s+0 todo", capsys.readouterr().out)


def test_feedback_only_when_asked_and_every_graded_cell_named(regraded):
    first, feedback_after_first, second = regraded
    assert not first.feedback and not feedback_after_first, "feedback was written before anyone asked for it"
    html = Path(second.feedback).read_text()
    toc = html.split('<div id="toc">', 1)[1].split("</div>", 1)[0]
    for grade_id in cells("code") + cells("markdown"):
        assert f"<code>{grade_id}</code>" in toc, f"the feedback's list of cells does not name {grade_id}"
    assert "Score: 1.5 / 2.0" in toc
    assert "BEGIN HIDDEN TESTS" not in html and "run_in_kernel" not in html


def test_the_exercise_tables_reach_the_hand_grader_and_nothing_that_runs(regraded, tmp_path_factory):
    copies = list(Path(tmp_path_factory.getbasetemp()).rglob(f"autograded/{STUDENT}/{ASSIGNMENT}/{NOTEBOOK}.ipynb"))
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
