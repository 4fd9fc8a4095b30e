"""Grade a folder of submissions: ``python -m autograder.grade [SUBMISSIONS] [options]``.

SUBMISSIONS is nbgrader's layout (``<student>/<assignment>/<notebook>.ipynb``, default: the course's
``submitted/``) or a plain folder of ``.ipynb`` files (the student id is the file name). The command
1. generates the assignment with nbgrader if the gradebook does not know it yet,
2. collects the submissions into ``submitted/`` and reads every notebook; a symbolic link, files that would share
   a student id, a corrupt or foreign notebook, or one nbgrader would fail on gets an error row and is left out
   (``submissions.py``, ``precheck.py``),
3. runs the checks of every submission in parallel workers (local processes, or a Dask cluster with
   ``--scheduler``: ``dask_grading.py``), each on student processes in the grading sandbox (``isolation.py``;
   the command refuses to grade where none can be made, unless ``--unsafe-no-sandbox``), with the grader's own
   code read once and checked unchanged before any grade is written (``integrity.py``),
4. runs ``nbgrader autograde --force`` on this batch's students (scores into the gradebook, SQLite or
   PostgreSQL: ``gradebook.py``; see ``nbgrader_plugin``; a student nbgrader fails on gets an error row with
   nbgrader's message: ``autograde_outcome.py``) and, with
   ``--feedback``, ``nbgrader generate_feedback --force`` (HTML without hidden tests: run it after hand-grading;
   students whose written answers still need a manual grade are left out, with a warning, unless
   ``--feedback-with-pending``),
5. writes ``grades.csv`` and ``<student>.json`` into the output folder and prints a table.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import fcntl
import itertools
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import nbformat

from autograder.nbgrader_ext import autograde_outcome
from autograder.boundary import cgroups
from autograder.boundary import isolation
from autograder.course.gradebook import database_url, require_reachable
from autograder.checks.grading import answer_cells
from autograder.boundary.integrity import CodeSnapshot, GraderTampered, verify_unchanged
from autograder.course.jobs import Job
from autograder.nbgrader_ext.app import run_nbgrader, run_nbgrader_at_once
from autograder.course.pool import local_pool
from autograder.course.precheck import AssignmentCells, precheck
from autograder.checks.registry import GRADE_IDS
from autograder.course.nbgrader_commands import COURSE_ROOT, generate_release, scripts_first_on_path
from autograder.boundary.sandbox import Limits
from autograder.course.submissions import ASSIGNMENT, NOTEBOOK, collect
from autograder.checks.training_run import TrainingRunSettings, preflight


@dataclass
class Row:
    """One student's line of the grade table."""
    student: str
    status: str = "graded"
    error: str = ""
    score: float = 0.0
    max_score: float = 0.0
    manual_pending: int = 0
    cells: dict = field(default_factory=dict)
    seconds: float = 0.0
    feedback: str = ""
    sandbox: str = ""


def read_job(student: str, path: Path, limits: Limits, training: TrainingRunSettings) -> Job:
    """The job of one submission (a notebook ``precheck`` accepted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nb = nbformat.read(str(path), as_version=4)
    return Job(student, tuple(answer_cells(nb)), limits, training)


@contextlib.contextmanager
def course_lock(root: Path) -> Iterator[None]:
    """Held while a grade command changes the course folder (``submitted/``, nbgrader's steps), so that grade
    commands sharing one folder take turns there; their checks still run at the same time."""
    with open(root / ".grading.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _report_code_changes(code: CodeSnapshot, record: Path) -> None:
    """Say which of the grader's files changed since the last batch graded into this folder, then record these."""
    if record.is_file():
        before = json.loads(record.read_text()).get("files", {})
        changed = sorted(n for n in before.keys() | code.hashes().keys() if before.get(n) != code.hashes().get(n))
        if changed:
            print(f"   note: the grader's code changed since the last batch: {', '.join(changed)}", flush=True)
    record.write_text(json.dumps({"digest": code.digest(), "files": code.hashes()}, indent=1) + "\n")


def course_config(root: Path):
    """The course's nbgrader_config.py, as nbgrader reads it."""
    from traitlets.config.loader import PyFileConfigLoader
    return PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()


def course_limits(config, timeout_s: float | None = None, memory_mb: int | None = None,
                  sandbox: str | None = None) -> Limits:
    """The limits of ``c.TrustedChecks`` in the course config (what nbgrader autograde uses), then the overrides."""
    section = config.get("TrustedChecks", {})
    limits = Limits(**{f.name: section[f.name] for f in dataclasses.fields(Limits) if f.name in section})
    overrides = {"check_timeout_s": timeout_s, "startup_timeout_s": timeout_s, "memory_mb": memory_mb,
                 "sandbox": sandbox}
    return dataclasses.replace(limits, **{k: v for k, v in overrides.items() if v is not None})


def _free_key(name: str, rows: dict[str, Row]) -> str:
    """The row key of a refused file: its name, numbered if a student id already has it (``x.ipynb.ipynb``)."""
    return next(key for key in itertools.chain([name], (f"{name} ({n})" for n in itertools.count(2)))
                if key not in rows)


def excluded_students(submitted: Path, good: list[str]) -> list[str]:
    """The folders of ``submitted`` that nbgrader's steps must skip (``--CourseDirectory.student_id_exclude``): all
    but this batch's graded students, so that a grade command never autogrades (and races on) another batch's
    students or a refused folder. A name with a comma cannot be excluded (nbgrader splits the list at commas, so it
    would exclude the names around the comma instead); collect never makes one."""
    if not submitted.is_dir():
        return []
    return sorted(p.name for p in submitted.iterdir() if p.is_dir() and p.name not in good and "," not in p.name)


EXCLUDE = "--CourseDirectory.student_id_exclude="
FEEDBACK_GROUP_MIN = 4   # students per process writing feedback at the same time (each compiles the templates)


def _exclude(command: list[str], students: list[str]) -> list[str]:
    """``command`` (an nbgrader command line) with ``--CourseDirectory.student_id_exclude`` set to ``students``."""
    kept = [a for a in command if not a.startswith(EXCLUDE)]
    names = sorted(s for s in students if "," not in s)
    return [*kept, f"{EXCLUDE}{','.join(names)}"]


def _feedback_commands(command: list[str], root: Path, processes: int) -> list[list[str]]:
    """``command`` (nbgrader generate_feedback) as one command per group of the students it writes feedback for, to
    run at the same time (it only reads the gradebook; each student's files are its own): each excludes every
    other student with an autograded notebook. One command for a few students, or if a name has a comma (nbgrader
    could not exclude it)."""
    excluded = set(next((a for a in command if a.startswith(EXCLUDE)), EXCLUDE)[len(EXCLUDE):].split(","))
    autograded = root / "autograded"
    found = sorted(p.name for p in autograded.iterdir() if (p / ASSIGNMENT).is_dir()) if autograded.is_dir() else []
    students = [s for s in found if s not in excluded]
    groups = min(processes, len(students) // FEEDBACK_GROUP_MIN)
    if groups < 2 or any("," in s for s in found):
        return [command]
    size = -(-len(students) // groups)
    chunks = [students[i:i + size] for i in range(0, len(students), size)]
    return [_exclude(command, [s for s in found if s not in chunk]) for chunk in chunks]


def _autograde_failures(root: Path, before: dict, log_text: str, log: Path, rows: dict[str, Row]) -> None:
    """An error row, with nbgrader's message, for every student nbgrader autograde did not grade in this run (the
    gradebook may still hold an earlier batch's scores for it)."""
    for student, reason in autograde_outcome.failures(root, before, log_text).items():
        rows[student].status = "error"
        rows[student].error = (f"nbgrader autograde failed for this submission ({reason}); any scores of it in the "
                               f"gradebook are an earlier batch's, not this one's. nbgrader's log: {log}. Fix what it "
                               "names and grade again.")
        print(f"   {student}: nbgrader autograde failed ({reason})", flush=True)


def _gradebook_rows(db_url: str, rows: dict[str, Row]) -> None:
    from nbgrader.api import Gradebook, MissingEntry
    with Gradebook(db_url) as gradebook:
        for student, row in rows.items():
            if row.status != "graded":
                continue
            try:
                submission = gradebook.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student)
            except MissingEntry:
                row.status, row.error = "error", "nbgrader did not autograde this submission (see the log above)"
                continue
            for grade in submission.grades:
                row.max_score += grade.max_score
                row.score += grade.score or 0.0
                # an answer only a person can score, not scored yet, or changed since it was (the course's
                # KeepManualGrades leaves hand-graded cells graded on a regrade): what the formgrader shows
                row.manual_pending += bool(grade.needs_manual_grade)
                if grade.cell_type == "code":
                    row.cells[grade.name] = {"points": grade.score, "max": grade.max_score}


def _messages(root: Path, rows: dict[str, Row]) -> None:
    """The failed checks' messages, read back from the autograded notebooks."""
    for student, row in rows.items():
        path = root / "autograded" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        if row.status != "graded" or not path.is_file():
            continue
        for cell in nbformat.read(str(path), as_version=4).cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in row.cells:
                errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
                row.cells[grade_id]["message"] = errors[0].evalue if errors else "passed"
        feedback = root / "feedback" / student / ASSIGNMENT / f"{NOTEBOOK}.html"
        row.feedback = str(feedback) if feedback.is_file() else ""


def write_outputs(rows: dict[str, Row], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    grade_ids = list(GRADE_IDS)
    with open(out / "grades.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["student", "status", "score", "max_score", "manual_pending", *grade_ids, "error"])
        for row in rows.values():
            writer.writerow([row.student, row.status, row.score, row.max_score, row.manual_pending,
                             *(row.cells.get(g, {}).get("points", "") for g in grade_ids), row.error])
    for row in rows.values():
        (out / f"{row.student}.json").write_text(json.dumps(vars(row), indent=2) + "\n")


def print_table(rows: dict[str, Row]) -> None:
    print(f"{'student':28} {'status':7} {'tests':>9} {'written':>8}  failed checks / error")
    for row in rows.values():
        code = sum(c["points"] or 0 for c in row.cells.values())
        code_max = sum(c["max"] for c in row.cells.values())
        failed = [g.removeprefix("test_") for g, c in row.cells.items() if (c["points"] or 0) < c["max"]]
        detail = row.error if row.status != "graded" else ", ".join(failed) or "-"
        tests = f"{code:g}/{code_max:g}" if row.status == "graded" else "-"
        written = f"{row.manual_pending} todo" if row.status == "graded" else "-"
        print(f"{row.student:28} {row.status:7} {tests:>9} {written:>8}  {detail}")


def pending_students(db_url: str, students: list[str]) -> list[str]:
    """The students of ``students`` with a cell that still needs a manual grade in the gradebook (a written answer
    nobody has scored, or one that changed since it was)."""
    from nbgrader.api import Gradebook, MissingEntry
    pending = []
    with Gradebook(db_url) as gradebook:
        for student in students:
            try:
                submission = gradebook.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student)
            except MissingEntry:
                continue
            if any(grade.needs_manual_grade for grade in submission.grades):
                pending.append(student)
    return pending


def _skip_pending_feedback(root: Path, pending: list[str]) -> None:
    """Warn that ``pending`` get no feedback, and remove an earlier batch's feedback of theirs (it would show scores
    of answers nobody has read, or of answers they have since changed)."""
    print(f"   warning: no feedback for {len(pending)} student(s) whose written answers still need a manual grade: "
          f"{', '.join(pending)}. Hand-grade them in the formgrader and grade again with --feedback, or write "
          "their feedback anyway with --feedback-with-pending (unscored answers show 0 points).",
          file=sys.stderr, flush=True)
    for student in pending:
        stale = root / "feedback" / student / ASSIGNMENT
        if stale.is_dir():
            shutil.rmtree(stale)


def feedback_template_options() -> list[str]:
    """nbgrader generate_feedback's options for the course's feedback page (``templates/simclr_feedback``):
    nbgrader's own, with every graded cell named in the list at the top, where nbgrader writes "Test cell"."""
    import nbgrader
    nbgrader_templates = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader" / "templates"
    return ["--HTMLExporter.template_name=simclr_feedback", "--HTMLExporter.template_file=simclr_feedback.html.j2",
            f"--HTMLExporter.extra_template_basedirs={Path(__file__).parent / 'nbgrader_ext' / 'templates'}",
            f"--HTMLExporter.extra_template_basedirs={nbgrader_templates}"]


def feedback_options() -> list[str]:
    """generate_feedback's options in a grade command: the course's page (``feedback_template_options``), made by
    ``feedback.FeedbackExporter`` (nbconvert's HTMLExporter, rendering the cells the notebooks share once)."""
    return ["--GenerateFeedback.exporter_class=autograder.nbgrader_ext.feedback.FeedbackExporter", *feedback_template_options()]


def nbgrader_steps(root: Path, out: Path, rows: dict[str, Row], good: list[str], db_url: str, limits: Limits,
                   feedback: bool, feedback_with_pending: bool, processes: int = 1) -> list[str]:
    """nbgrader autograde of ``good`` (their checks' results are in ``out/checks``) and, with ``feedback``, nbgrader
    generate_feedback (in up to ``processes`` processes); an error row for each student autograde failed on.
    Returns the students left without feedback because answers of theirs still need a manual grade."""
    common = [f"--CourseDirectory.db_url={db_url}", f"--TrustedChecks.results_directory={out / 'checks'}",
              f"--TrustedChecks.check_timeout_s={limits.check_timeout_s}",
              f"--TrustedChecks.startup_timeout_s={limits.startup_timeout_s}",
              f"--TrustedChecks.memory_mb={limits.memory_mb}", f"--TrustedChecks.sandbox={limits.sandbox}"]
    skipped: list[str] = []
    with course_lock(root):
        others = excluded_students(root / "submitted", good)
        if others:
            common.append(f"--CourseDirectory.student_id_exclude={','.join(others)}")
        if not good:
            return skipped
        commands = [["autograde", ASSIGNMENT, "--force", *common]]
        if feedback:
            commands.append(["generate_feedback", ASSIGNMENT, "--force", *common, *feedback_options()])
        print(f"== nbgrader {' and '.join(c[0] for c in commands)}", flush=True)
        start = time.monotonic()
        before = autograde_outcome.before_autograde(root, good)
        for command in commands:
            if command[0] == "generate_feedback" and not feedback_with_pending:
                graded = [s for s in good if rows[s].status == "graded"]
                skipped = pending_students(db_url, graded)
                if skipped:
                    _skip_pending_feedback(root, skipped)
                    if len(skipped) == len(graded):
                        break
                    command = _exclude(command, others + skipped)
            result = run_nbgrader_at_once(_feedback_commands(command, root, processes), root) \
                if command[0] == "generate_feedback" else run_nbgrader(command, root)
            log = out / f"nbgrader-{command[0]}.log"
            log.write_text(result.stdout + result.stderr)
            if result.returncode != 0:
                print(f"nbgrader {command[0]} reported errors (all of it in {log}):\n{result.stderr[-3000:]}",
                      file=sys.stderr)
            if command[0] == "autograde":
                _autograde_failures(root, before, result.stderr, log, rows)
        seconds = time.monotonic() - start
        print(f"   nbgrader done in {seconds:.1f} s ({seconds / len(good):.2f} s per student)", flush=True)
    return skipped


def grade(submissions: Path, root: Path = COURSE_ROOT, out: Path | None = None, workers: int | None = None,
          db_url: str | None = None, limits: Limits | None = None, regenerate: bool = False,
          feedback: bool = False, scheduler: str | None = None, feedback_with_pending: bool = False) -> dict[str, Row]:
    """Grade every submission in ``submissions``; return the rows (also written to ``out``).

    ``limits`` default to the course config's ``c.TrustedChecks`` settings. ``feedback`` also writes the
    students' feedback (do it once the written answers are hand-graded: it shows their scores), except for
    students with answers still to hand-grade, unless ``feedback_with_pending``. ``scheduler``
    (``tcp://HOST:8786``) sends the checks to a Dask cluster (``dask_grading``) instead of ``workers`` local
    processes; nbgrader's steps stay here."""
    scripts_first_on_path()
    root = root.resolve()
    out = (out or root / "grades").resolve()
    db_url = database_url(db_url, root)
    require_reachable(db_url)
    config = course_config(root)
    limits = limits or course_limits(config)
    try:
        isolation.require(limits.sandbox)
    except isolation.SandboxUnavailable as error:
        raise SystemExit(f"not grading: {error}") from None
    training = TrainingRunSettings.from_config(config)
    code = CodeSnapshot.read()
    if not scheduler:
        preflight(training)   # on a cluster, each worker checks its own copy of the data
        return _grade_batch(submissions, root, out, workers, db_url, limits, training, code, regenerate, feedback,
                            feedback_with_pending=feedback_with_pending)
    from autograder.course.dask_grading import ClusterGrader
    with ClusterGrader(scheduler, code) as cluster:   # the cluster is checked before anything is graded
        return _grade_batch(submissions, root, out, workers, db_url, limits, training, code, regenerate, feedback,
                            cluster, feedback_with_pending)


def _grade_batch(submissions: Path, root: Path, out: Path, workers: int | None, db_url: str, limits: Limits,
                 training: TrainingRunSettings, code: CodeSnapshot, regenerate: bool, feedback: bool,
                 cluster=None, feedback_with_pending: bool = False) -> dict[str, Row]:
    """``grade`` once its inputs are checked: ``cluster``, a ``dask_grading.ClusterGrader``, or the local pool."""
    db_option = f"--CourseDirectory.db_url={db_url}"
    from nbgrader.api import Gradebook, MissingEntry
    with course_lock(root):
        with Gradebook(db_url) as gradebook:
            try:
                gradebook.find_assignment(ASSIGNMENT)
            except MissingEntry:
                regenerate = True
        if regenerate:
            print(f"== generating the assignment {ASSIGNMENT} (nbgrader generate_assignment)", flush=True)
            generate_release(ASSIGNMENT, root, extra=[db_option])
        cells = AssignmentCells.from_gradebook(db_url)
        found = collect(submissions.resolve(), root)
    notebooks = found.notebooks
    sandbox = "bwrap" if limits.sandbox == "bwrap" else f"{limits.sandbox} (UNSAFE: {isolation.UNSAFE_WARNING})"
    rows = {student: Row(student, sandbox=sandbox) for student in notebooks}
    for name, problem in found.refused.items():
        key = _free_key(name, rows)
        rows[key] = Row(key, status="error", error=problem, sandbox=sandbox)
    for student, path in notebooks.items():
        problem = precheck(path, cells)
        if problem:
            rows[student].status, rows[student].error = "error", problem
    good = [s for s in notebooks if rows[s].status == "graded"]
    jobs = [read_job(s, notebooks[s], limits, training) for s in good]
    checks_dir = out / "checks"
    checks_dir.mkdir(parents=True, exist_ok=True)
    _report_code_changes(code, out / "grader-code.json")
    start = time.monotonic()
    if cluster is not None:
        print(f"== checking {len(good)} submissions on the Dask cluster at {cluster.address} "
              f"({len(rows) - len(good)} unreadable)", flush=True)
        outcomes = cluster.grade(jobs)
    else:
        workers = workers or max(1, os.cpu_count() or 1)
        print(f"== checking {len(good)} submissions with {workers} workers ({len(rows) - len(good)} unreadable)",
              flush=True)
        if limits.sandbox == "bwrap":
            for problem in filter(None, (cgroups.unavailable(), cgroups.cpu_unavailable(),
                                         cgroups.cpu_time_unavailable())):
                print(f"   note: {problem}", flush=True)
        outcomes = local_pool(jobs, code, workers)
    for student, result, seconds in outcomes:
        rows[student].seconds = round(seconds, 1)
        if isinstance(result, str):
            rows[student].status, rows[student].error = "error", result
            print(f"   {student}: {result}", flush=True)
            continue
        (checks_dir / f"{student}.json").write_text(json.dumps(result))
        print(f"   {student}: {sum(r['passed'] for r in result['results'].values())}/{len(result['results'])} "
              f"checks passed ({seconds:.1f} s)", flush=True)
    print(f"   checks done in {time.monotonic() - start:.1f} s", flush=True)
    try:
        verify_unchanged(code)
    except GraderTampered as error:
        raise SystemExit(f"not grading: {error}") from None
    good = [s for s in notebooks if rows[s].status == "graded"]

    skipped = nbgrader_steps(root, out, rows, good, db_url, limits, feedback, feedback_with_pending,
                             workers or os.cpu_count() or 1)
    _gradebook_rows(db_url, rows)
    _messages(root, rows)
    for row in rows.values():   # feedback left from an earlier batch is not this grade's
        if not feedback or row.student in skipped:
            row.feedback = ""
    write_outputs(rows, out)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", nargs="?", type=Path, help="default: <root>/submitted")
    parser.add_argument("--root", type=Path, default=COURSE_ROOT, help="course root (nbgrader_config.py, source/)")
    parser.add_argument("--out", type=Path, help="grades folder (default: <root>/grades)")
    parser.add_argument("--workers", type=int, help="parallel submissions (default: CPU count)")
    parser.add_argument("--db", help="gradebook URL (default: sqlite:///<root>/gradebook.db; or "
                        "postgresql://USER:PASSWORD@HOST:PORT/DATABASE, with pip install -e '.[postgres]')")
    parser.add_argument("--scheduler", metavar="tcp://HOST:8786",
                        help="grade the checks on this Dask cluster (pip install -e '.[dask]'; see autograder/course/dask_grading.py) "
                             "instead of local processes")
    parser.add_argument("--timeout", type=float, help="seconds per check (default: c.TrustedChecks in the config)")
    parser.add_argument("--memory-mb", type=int, help="memory limit of a student process (default: the config's)")
    parser.add_argument("--regenerate", action="store_true", help="regenerate the assignment even if the gradebook has it")
    parser.add_argument("--feedback", action="store_true",
                        help="also write the students' feedback HTML (after hand-grading: it shows the written answers' "
                             "scores); students with written answers still to hand-grade are left out, with a warning")
    parser.add_argument("--feedback-with-pending", action="store_true",
                        help="--feedback for every student, written answers still to hand-grade included (they show 0)")
    parser.add_argument("--unsafe-no-sandbox", action="store_true",
                        help="run student code without the grading sandbox (trusted code only; warns on every run)")
    args = parser.parse_args(argv)
    limits = course_limits(course_config(args.root), args.timeout, args.memory_mb,
                           "none" if args.unsafe_no_sandbox else None)
    start = time.monotonic()
    rows = grade(args.submissions or args.root / "submitted", args.root, args.out, args.workers, args.db, limits,
                 args.regenerate, args.feedback or args.feedback_with_pending, args.scheduler,
                 args.feedback_with_pending)
    print()
    print_table(rows)
    print(f"\n{len(rows)} submissions in {time.monotonic() - start:.0f} s; grades in "
          f"{(args.out or args.root.resolve() / 'grades')}/grades.csv")


if __name__ == "__main__":
    main()
