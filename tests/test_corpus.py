"""Grade the whole corpus (tests/corpus.py) with the batch command and compare every score with the expected one."""
import csv
import dataclasses
import json
import shutil
from pathlib import Path

import pytest

import attacks
from autograder.course import variants
from autograder.course.class_report import REPORT, read_report
from autograder.grade import grade
from autograder.boundary.sandbox import Limits
from corpus import CORPUS, ROOT, TOTAL, WHOLE_CELLS, write_corpus

# Short limits keep the endless-loop and crash submissions cheap: CPU seconds, of which correct code needs at most
# about 1 (1.5 beside busy processes), so a busy machine changes no score.
LIMITS = Limits(check_timeout_s=5, startup_timeout_s=10, memory_mb=2048, sandbox=attacks.sandbox_mode())


def _course(tmp_path_factory, corpus) -> Path:
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(ROOT / "source", root / "source", ignore=shutil.ignore_patterns(".hypothesis", "__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", root)
    write_corpus(root / "incoming", corpus)
    return root


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = _course(tmp_path_factory, CORPUS)
    before = {"repository": attacks.tree_digest(ROOT), "course": attacks.tree_digest(root, ("source", "incoming"))}
    rows = grade(root / "incoming", root=root, workers=2, limits=LIMITS, feedback=True)
    after = {"repository": attacks.tree_digest(ROOT), "course": attacks.tree_digest(root, ("source", "incoming"))}
    return root, rows, before, after


def _got(row) -> float | str:
    if row.status != "graded":
        return "error"
    return sum(cell["points"] or 0 for cell in row.cells.values())


def test_every_submission_gets_its_expected_score(graded, capsys):
    _root, rows, *_ = graded
    lines = [f"{'submission':28} {'expected':>8} {'got':>6}  what"]
    mismatches = []
    for submission in CORPUS:
        got = _got(rows[submission.name])
        lines.append(f"{submission.name:28} {submission.expected!s:>8} {got!s:>6}  {submission.what}")
        if got != submission.expected:
            failed = {g: c.get("message") for g, c in rows[submission.name].cells.items() if (c["points"] or 0) < c["max"]}
            mismatches.append(f"{submission.name}: expected {submission.expected}, got {got}; failed: {failed}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert len(CORPUS) >= 30
    assert not mismatches, "\n".join(mismatches)


def test_with_every_top_level_statement_run_each_attack_scores_the_same(tmp_path_factory):
    # No verdict rests on the definitions-only filter: the attacks' patches of the course's helpers, of torch and
    # of optimizers all run, and each submission still gets what its honest work earns.
    root = _course(tmp_path_factory, WHOLE_CELLS)
    rows = grade(root / "incoming", root=root, workers=2, limits=dataclasses.replace(LIMITS, definitions_only=False))
    got = {s.name: _got(rows[s.name]) for s in WHOLE_CELLS}
    assert got == {s.name: s.expected for s in WHOLE_CELLS}
    for submission in WHOLE_CELLS:
        failed = {g for g, c in rows[submission.name].cells.items() if (c["points"] or 0) < c["max"]}
        assert failed == set(submission.fails), f"{submission.name}: failed {sorted(failed)}"


def test_each_mistake_fails_exactly_its_cells(graded):
    _root, rows, *_ = graded
    for submission in CORPUS:
        row = rows[submission.name]
        if row.status == "graded":
            failed = {g for g, c in row.cells.items() if (c["points"] or 0) < c["max"]}
            assert failed == set(submission.fails), f"{submission.name}: failed {sorted(failed)}"


def test_unreadable_notebooks_get_an_error_row_that_says_what_to_do(graded):
    _root, rows, *_ = graded
    assert "re-download" in rows["corrupt_json"].error
    assert "another assignment" in rows["foreign_notebook"].error


def test_feedback_names_failed_checks_and_hides_the_hidden_tests(graded):
    root, rows, *_ = graded
    html = Path(rows["loss_no_l2"].feedback).read_text()
    assert "CheckFailed" in html and "rescaling the projections changed the loss" in html
    for secret in ("BEGIN HIDDEN TESTS", "run_in_kernel", "autograder"):
        assert secret not in html, f"the feedback shows {secret!r}"
    assert not Path(rows["corrupt_json"].feedback or root / "missing").exists()


def test_grades_are_exported_as_csv_and_json(graded):
    root, rows, *_ = graded
    with open(root / "grades" / "grades.csv") as file:
        table = {row["student"]: row for row in csv.DictReader(file)}
    assert set(table) == {s.name for s in CORPUS}
    assert float(table["reference"]["score"]) == TOTAL and table["corrupt_json"]["status"] == "error"
    record = json.loads((root / "grades" / "train_no_zero_grad.json").read_text())
    assert "zero_grad" in record["cells"]["test_train_epoch_hidden"]["message"]


# The mistakes the class report names for each known mistake of the corpus (autograder/checks/mistakes.py); the
# correct variants have none. loss_seed_002 (a constant) is one no check names: it is listed by its messages.
NAMED_MISTAKES = {
    "augment_deterministic": {"augment_not_random", "augment_gray_rate"},
    "augment_no_jitter": {"augment_jitter_rate"},
    "head_no_batchnorm": {"head_batchnorm"}, "head_no_relu": {"head_no_relu"},
    "loss_seed_002": set(), "loss_seed_004": {"loss_self_similarity"}, "loss_self_similarity": {"loss_self_similarity"},
    "loss_no_l2": {"loss_no_l2"}, "loss_tau_multiplied": {"loss_tau_multiplied"},
    "loss_mean_over_n": {"loss_mean_over_n"}, "loss_one_direction": {"loss_not_symmetric"},
    "loss_interleaved": {"loss_not_symmetric"},
    "train_same_view": {"train_same_view"}, "train_no_zero_grad": {"train_no_zero_grad"},
    "train_last_loss": {"train_not_mean"},
    "probe_not_frozen": {"probe_not_frozen"}, "probe_train_mode": {"probe_train_mode"},
    "probe_mode_not_restored": {"probe_mode_not_restored"}, "probe_mode_always_train": {"probe_mode_not_restored"},
    "unchanged_release": {"not_written"}, "tamper_endless_call": {"time_limit"}, "tamper_sigkill": {"process_died"},
}


def check_class_report_names(grades: Path) -> None:
    """Each known mistake of the corpus named as NAMED_MISTAKES says, only named ones where a name exists, none for
    the correct variants; the report written by the batch."""
    assert set(variants.BROKEN) <= set(NAMED_MISTAKES), "a new broken variant needs its expected name here"
    assert (grades / REPORT).is_file()
    students = {s.student: s for s in read_report(grades).students}
    for name, expected in NAMED_MISTAKES.items():
        student = students[name]
        assert {i for _component, i in student.named} == expected, f"{name}: named {sorted(student.named)}"
        assert bool(student.unnamed) == (not expected), f"{name}: unnamed {student.unnamed}"
    for name in variants.CORRECT:
        assert not students[name].named and not students[name].unnamed, name


def test_the_class_report_names_each_known_mistake(graded):
    root, *_ = graded
    check_class_report_names(root / "grades")


def test_the_documented_corpus_table_matches_the_corpus():
    rows = {}
    for line in (ROOT / "docs" / "grading-design.md").read_text().splitlines():
        parts = [p.strip() for p in line.strip("|").split("|")]
        if len(parts) == 4 and parts[0].startswith("`") and parts[1] in {str(s.expected) for s in CORPUS}:
            rows[parts[0].strip("`")] = parts[1]
    assert rows == {s.name: str(s.expected) for s in CORPUS}


def test_the_batch_changes_no_file_of_the_course_and_no_submission(graded):
    root, _rows, before, after = graded
    assert after == before
    for submission in CORPUS:
        if submission.raw is None:
            copy = root / "submitted" / submission.name / "simclr" / "simclr_lab.ipynb"
            assert copy.read_text() == (root / "incoming" / f"{submission.name}.ipynb").read_text(), submission.name


def test_no_process_a_submission_started_outlives_the_batch(graded):
    assert not attacks.processes_with(attacks.DAEMON_TOKEN)
