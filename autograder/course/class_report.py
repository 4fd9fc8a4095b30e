"""The class report: one page for the instructor after a batch, ``<grades>/report.html`` and its figures.

``write_report(grades_dir)`` reads what the grade command wrote there (``grades.csv``, ``<student>.json``) and
writes ``report.html`` with three PNGs beside it: the score distribution, each check's pass rate, and the most
common mistakes by name (``autograder.checks.mistakes``). The grade command calls it after every batch; on an
existing folder run ``python -m autograder.class_report GRADES_DIR``.

Only check names, counts, pass rates, mistake names and masked messages reach the page, never a check's inputs
or expected values. Student ids and messages are the students' text: the page is rendered by Jinja2 with
autoescaping, and its Content-Security-Policy allows no script at all.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from autograder.checks import mistakes as known
from autograder.checks.registry import BY_GRADE_ID, TRAINING_RUN_ID

REPORT = "report.html"
FIGURES = {"scores": "report-scores.png", "checks": "report-checks.png", "mistakes": "report-mistakes.png"}
TOP_MISTAKES = 12          # bars in the mistakes figure (the table lists them all)
FIXED_COLUMNS = ("student", "status", "score", "max_score", "manual_pending", "error")
TEMPLATES = Path(__file__).resolve().parent / "templates"


class ReportError(Exception):
    """The grades folder cannot be read as a grade run's output; the message says what to do."""


@dataclass
class Student:
    """One row of grades.csv, with the mistakes found in its failed checks (named, or grouped by message)."""
    student: str
    status: str
    score: float | None
    max_score: float | None
    manual_pending: int
    points: dict[str, float | None]
    maxima: dict[str, float]
    error: str = ""
    named: dict[tuple[str, str], set[str]] = field(default_factory=dict)   # (component, mistake id) -> checks
    unnamed: list[tuple[str, str, str]] = field(default_factory=list)     # (component, check, unnamed_key)

    @property
    def graded(self) -> bool:
        return self.status == "graded"

    @property
    def mistakes(self) -> list[str]:
        """What the page lists for this student: the named mistakes' titles, then the unnamed failures."""
        return ([known.BY_ID[i].title for _c, i in self.named]
                + [f"{g.removeprefix('test_')}: {key}" for _c, g, key in self.unnamed])

    def passed(self, grade_id: str) -> bool | None:
        """Whether the check earned all its points; None where the row has no points for it."""
        points, most = self.points.get(grade_id), self.maxima.get(grade_id)
        return None if points is None or most is None else points >= most


@dataclass
class CheckRate:
    grade_id: str
    component: str
    passed: int
    graded: int

    @property
    def rate(self) -> float | None:
        return self.passed / self.graded if self.graded else None


@dataclass
class MistakeCount:
    """How many students made one mistake: a named one (``id``) or a group of unnamed failures of one check."""
    id: str
    title: str
    component: str
    students: list[str] = field(default_factory=list)
    checks: set[str] = field(default_factory=set)

    @property
    def named(self) -> bool:
        return bool(self.id)


@dataclass
class ClassReport:
    grades_dir: Path
    students: list[Student]
    checks: list[CheckRate]
    mistakes: list[MistakeCount]
    written: datetime

    @property
    def graded(self) -> list[Student]:
        return [s for s in self.students if s.graded]

    @property
    def not_graded(self) -> list[Student]:
        return [s for s in self.students if not s.graded]

    @property
    def scores(self) -> list[float]:
        return [s.score for s in self.graded if s.score is not None]

    @property
    def max_score(self) -> float | None:
        maxima = [s.max_score for s in self.graded if s.max_score is not None]
        return max(maxima) if maxima else None

    @property
    def score_summary(self) -> dict[str, float] | None:
        scores = self.scores
        if not scores:
            return None
        return {"mean": statistics.fmean(scores), "median": statistics.median(scores), "min": min(scores),
                "max": max(scores)}

    @property
    def all_passed(self) -> int:
        """Graded students who passed every check."""
        return sum(all(s.passed(c.grade_id) is not False for c in self.checks) for s in self.graded)

    @property
    def pending(self) -> int:
        """Graded students with written answers still to hand-grade."""
        return sum(s.manual_pending > 0 for s in self.graded)


def component_of(grade_id: str) -> str:
    """The component a test cell grades (``training run`` for the training run)."""
    if grade_id == TRAINING_RUN_ID:
        return "training run"
    check = BY_GRADE_ID.get(grade_id)
    return check.component if check is not None else grade_id


def _number(text: str | None, what: str, where: str) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise ReportError(f"{where}: {what} is {text!r}, not a number; grades.csv is not the grade command's "
                          "output (grade again)") from None
    return value if math.isfinite(value) else None


def _read_student(grades_dir: Path, line: dict[str, str], grade_ids: list[str], where: str) -> Student:
    points = {g: _number(line[g], g, where) for g in grade_ids}
    pending = _number(line["manual_pending"], "manual_pending", where) or 0
    student = Student(line["student"] or "", line["status"] or "", _number(line["score"], "score", where),
                      _number(line["max_score"], "max_score", where), int(pending), points, {}, line["error"] or "")
    if not student.graded:
        return student
    record = grades_dir / f"{student.student}.json"
    try:
        cells = json.loads(record.read_text())["cells"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ReportError(f"{record} cannot be read ({type(error).__name__}: {error}): every graded student of "
                          "grades.csv has a <student>.json beside it; grade again to write both") from None
    student.maxima = {g: float(c["max"]) for g, c in cells.items() if isinstance(c, dict) and "max" in c}
    _name_mistakes(student, {g: str(c.get("message", "")) for g, c in cells.items() if isinstance(c, dict)})
    return student


def _name_mistakes(student: Student, messages: dict[str, str]) -> None:
    """The student's mistakes: each named one once; a component's unnamed failures only where none of its checks
    named a mistake (they are then most likely the same mistake seen by another check)."""
    named: dict[tuple[str, str], set[str]] = defaultdict(set)
    unnamed: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for grade_id in student.points:
        message = messages.get(grade_id, "")
        if student.passed(grade_id) is not False or known.follows_components(grade_id, message):
            continue
        component, mistake = component_of(grade_id), known.name(grade_id, message)
        if mistake is not None:
            named[(component, mistake.id)].add(grade_id)
        else:
            unnamed[component].append((grade_id, known.unnamed_key(message)))
    student.named = dict(named)
    student.unnamed = [(c, g, key) for c, items in unnamed.items() if not any(n[0] == c for n in named)
                       for g, key in items]


def _count_mistakes(students: list[Student]) -> list[MistakeCount]:
    counts: dict[tuple, MistakeCount] = {}
    for student in students:
        for (component, mistake_id), checks in student.named.items():
            count = counts.setdefault((component, mistake_id), MistakeCount(
                mistake_id, known.BY_ID[mistake_id].title, component))
            count.students.append(student.student)
            count.checks |= checks
        for component, grade_id, key in student.unnamed:
            count = counts.setdefault((component, grade_id, key), MistakeCount("", key, component))
            if student.student not in count.students:
                count.students.append(student.student)
            count.checks.add(grade_id)
    return sorted(counts.values(), key=lambda m: (-len(m.students), not m.named, m.component, m.title))


def read_report(grades_dir: Path) -> ClassReport:
    """The class report's numbers, from ``grades_dir/grades.csv`` and the students' JSON records beside it."""
    table = grades_dir / "grades.csv"
    try:
        with open(table, newline="") as file:
            reader = csv.DictReader(file)
            header = list(reader.fieldnames or [])
            lines = list(reader)
    except OSError as error:
        raise ReportError(f"no grades to report on: {table} cannot be read ({error.strerror}); run "
                          "`python -m autograder.grade` first, or name the folder it wrote") from None
    missing = [c for c in FIXED_COLUMNS if c not in header]
    if missing:
        raise ReportError(f"{table} has no column {', '.join(missing)}: it is not the grade command's grades.csv")
    grade_ids = [c for c in header if c not in FIXED_COLUMNS]
    students = [_read_student(grades_dir, line, grade_ids, f"{table}, line {n}") for n, line in enumerate(lines, 2)]
    checks = [CheckRate(g, component_of(g), sum(s.passed(g) is True for s in students),
                        sum(s.passed(g) is not None for s in students)) for g in grade_ids]
    written = datetime.fromtimestamp(table.stat().st_mtime, timezone.utc)
    return ClassReport(grades_dir, students, checks, _count_mistakes(students), written)


# --- figures -----------------------------------------------------------------------------------------------

def _save(figure, path: Path, numbers: dict) -> None:
    """The figure as a PNG whose ``Description`` text chunk holds the numbers it draws (as JSON)."""
    figure.savefig(path, dpi=110, metadata={"Description": json.dumps(numbers)})


def _score_figure(report: ClassReport, path: Path) -> None:
    from matplotlib.figure import Figure
    figure = Figure(figsize=(7, 3.2), layout="constrained")
    axes = figure.add_subplot()
    scores, top = report.scores, report.max_score or 0
    edges = list(range(0, math.ceil(max([top, *scores], default=0)) + 2))
    counts, _, _ = axes.hist(scores, bins=edges, align="left", rwidth=0.85, color="#4472c4")
    for x, n in zip(edges, counts):
        if n:
            axes.annotate(f"{n:g}", (x, n), ha="center", va="bottom", fontsize=8)
    axes.set_ylim(0, max(counts, default=0) * 1.15 + 1)
    axes.set_xlabel(f"score (of {top:g})" if top else "score")
    axes.set_ylabel("students")
    axes.set_title(f"Score distribution of the {len(scores)} graded submissions")
    axes.yaxis.get_major_locator().set_params(integer=True)
    _save(figure, path, {"scores": scores, "max_score": top})


def _checks_figure(report: ClassReport, path: Path) -> None:
    from matplotlib.figure import Figure
    checks = report.checks
    figure = Figure(figsize=(7, 0.35 * len(checks) + 1.2), layout="constrained")
    axes = figure.add_subplot()
    rates = [100 * (c.rate or 0) for c in checks]
    positions = range(len(checks))[::-1]
    axes.barh(list(positions), rates, color=["#5b9b5b" if r >= 80 else "#d08c30" if r >= 50 else "#c0504d"
                                               for r in rates])
    axes.set_yticks(list(positions), [c.grade_id.removeprefix("test_") for c in checks], fontsize=8)
    for y, check, rate in zip(positions, checks, rates):
        axes.annotate(f"{check.passed}/{check.graded}", (rate, y), xytext=(3, 0), textcoords="offset points",
                      va="center", fontsize=8)
    axes.set_xlim(0, 112)
    axes.set_xlabel("students who passed (%)")
    axes.set_title("Pass rate per check")
    _save(figure, path, {"checks": {c.grade_id: [c.passed, c.graded] for c in checks}})


def _mistakes_figure(report: ClassReport, path: Path) -> None:
    from matplotlib.figure import Figure
    top = report.mistakes[:TOP_MISTAKES]
    figure = Figure(figsize=(9, 0.4 * max(len(top), 2) + 1.2), layout="constrained")
    axes = figure.add_subplot()
    if top:
        positions = list(range(len(top)))[::-1]
        counts = [len(m.students) for m in top]
        axes.barh(positions, counts, color=["#4472c4" if m.named else "#a0a0a0" for m in top])
        labels = [textwrap.shorten(f"{m.component}: {m.title}", 75, placeholder="…") for m in top]
        axes.set_yticks(positions, labels, fontsize=8)
        for y, n in zip(positions, counts):
            axes.annotate(str(n), (n, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        axes.set_xlim(0, max(counts) * 1.1 + 0.5)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.set_xlabel("students (blue: a named mistake; grey: grouped by check and message)")
    else:
        axes.set_axis_off()
        axes.text(0.5, 0.5, "no failed check", ha="center", va="center", transform=axes.transAxes)
    axes.set_title("Most common mistakes")
    _save(figure, path, {"mistakes": [[m.component, m.title, len(m.students)] for m in top]})


# --- the page ------------------------------------------------------------------------------------------------

def render(report: ClassReport) -> str:
    """The page's HTML (autoescaped: every student id and message is shown as text)."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return environment.get_template("class_report.html").render(report=report, figures=FIGURES)


def write_report(grades_dir: Path) -> Path:
    """Write ``report.html`` and its figures into ``grades_dir`` (a grade run's output); return the page's path."""
    grades_dir = Path(grades_dir)
    report = read_report(grades_dir)
    _score_figure(report, grades_dir / FIGURES["scores"])
    _checks_figure(report, grades_dir / FIGURES["checks"])
    _mistakes_figure(report, grades_dir / FIGURES["mistakes"])
    page = grades_dir / REPORT
    page.write_text(render(report), encoding="utf-8")
    return page


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m autograder.class_report",
                                     description="Write the class report (report.html and its PNGs) into a grades "
                                                 "folder written by python -m autograder.grade.")
    parser.add_argument("grades", type=Path, nargs="?", default=Path("grades"),
                        help="the grades folder (default: ./grades)")
    args = parser.parse_args(argv)
    try:
        page = write_report(args.grades)
    except ReportError as error:
        raise SystemExit(f"no class report: {error}") from None
    print(f"class report: {page}")
