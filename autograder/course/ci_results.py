"""The grade command's results for CI systems, written next to ``grades.csv``: ``junit.xml`` (one testcase per
graded cell per student, points in its properties) and ``summary.md`` (counts, failures by cell, the table), which
``main`` also appends to ``$GITHUB_STEP_SUMMARY`` when that is set.

Student ids and messages are the students' text (a check's message may quote what their code raised): in the XML
every character XML cannot hold is written as its escape; in the Markdown they only ever appear inside code spans,
so no link, image, HTML or table cell of theirs is rendered.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Protocol

from junitparser import Error, Failure, JUnitXml, Properties, Property, Skipped, TestCase, TestSuite


class Row(Protocol):
    """What is read of a row of the grade command (``autograder.grade.Row``; a command, so not imported here)."""
    student: str
    status: str
    error: str
    score: float
    max_score: float
    manual_pending: int
    cells: dict   # grade_id -> {"points", "max", "message"}
    seconds: float


JUNIT = "junit.xml"
SUMMARY = "summary.md"
WRITTEN = "written_answers"   # the testcase of a student's hand-graded answers, all of them together
MARKDOWN_LIMIT = 300          # characters of a student's text shown in the summary (all of it is in grades.csv)
STEP_SUMMARY_LIMIT = 1000 * 1024   # bytes; GitHub's limit is 1 MiB per step
CUT = "\n*The summary is cut here: the whole of it is summary.md in the grades folder (the run's artifact).*\n"
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """``text`` with every character XML 1.0 cannot hold (control characters, lone surrogates) as its escape."""
    return _NOT_XML.sub(lambda m: ascii(m.group())[1:-1], text)


def printable(text: str) -> str:
    """``text`` on one line: every character that is not printable (newlines, control and bidi characters) as its
    escape."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def code_span(text: str, limit: int = MARKDOWN_LIMIT, in_table: bool = True) -> str:
    """``text`` as a Markdown code span, which renders nothing of it (no link, emphasis or HTML): on one line, cut
    at ``limit`` characters, fenced by more backticks than it holds in a row, its ``|`` escaped in a table cell."""
    text = printable(text)
    if len(text) > limit:
        text = text[:limit] + "…"
    if in_table:
        text = text.replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def _points(value: float | None) -> str:
    return f"{value or 0:g}"


def _cell_case(student: str, grade_id: str, cell: Mapping) -> TestCase:
    case = TestCase(grade_id, classname=xml_text(student))
    properties = Properties()
    properties.add_property(Property("points", _points(cell["points"])))
    properties.add_property(Property("max_points", _points(cell["max"])))
    case.append(properties)
    if not cell["max"]:
        case.result = [Skipped("worth 0 points: not graded")]
    elif (cell["points"] or 0) < cell["max"]:
        message = xml_text(cell.get("message") or "no message (see the student's autograded notebook)")
        failure = Failure(message, "CheckFailed")
        failure.text = f"{_points(cell['points'])}/{_points(cell['max'])} points: {message}"
        case.result = [failure]
    return case


def _written_case(row: Row) -> TestCase:
    """The hand-graded answers: the points the code cells do not account for; skipped while some await a person,
    failed when they lost points."""
    case = TestCase(WRITTEN, classname=xml_text(row.student))
    properties = Properties()
    code, code_max = _code_points(row)
    properties.add_property(Property("points", _points(row.score - code)))
    properties.add_property(Property("max_points", _points(row.max_score - code_max)))
    properties.add_property(Property("manual_pending", str(row.manual_pending)))
    case.append(properties)
    if row.manual_pending:
        case.result = [Skipped(f"{row.manual_pending} written answer(s) to hand-grade in the formgrader")]
    elif row.score - code < row.max_score - code_max:
        case.result = [Failure(f"{_points(row.score - code)}/{_points(row.max_score - code_max)} points for the "
                               "written answers", "WrittenAnswers")]
    return case


def _code_points(row: Row) -> tuple[float, float]:
    return sum(c["points"] or 0 for c in row.cells.values()), sum(c["max"] for c in row.cells.values())


def junit(rows: Iterable[Row]) -> JUnitXml:
    """One testsuite per student: a testcase per autograded cell (failed when it lost points, with the check's
    message; skipped when worth 0 points) and one for the written answers; a submission that was not graded is one
    testcase with an error."""
    rows = list(rows)
    xml = JUnitXml("grades")
    for row in rows:
        suite = TestSuite(xml_text(row.student))
        for name, value in (("status", row.status), ("score", _points(row.score)),
                            ("max_score", _points(row.max_score)), ("manual_pending", str(row.manual_pending))):
            suite.add_property(name, value)
        if row.status != "graded":
            case = TestCase("grading", classname=xml_text(row.student), time=row.seconds)
            case.result = [Error(xml_text(row.error), "NotGraded")]
            suite.append(case)
        else:
            for grade_id, cell in row.cells.items():
                suite.append(_cell_case(row.student, grade_id, cell))
            suite.append(_written_case(row))
        xml.append(suite)   # not add_testsuite/add_testcase: they compare and count at each call (quadratic)
    xml.update_statistics()
    for suite, row in zip(xml, rows):   # the submission's checks (update_statistics adds up the testcases' times)
        suite.time = row.seconds
    xml.time = round(sum(row.seconds for row in rows), 1)
    return xml


def summary(rows: Iterable[Row]) -> str:
    """The Markdown summary: counts, the submissions not graded, failures by cell, then every student's line."""
    rows = list(rows)
    graded = [r for r in rows if r.status == "graded"]
    errors = [r for r in rows if r.status != "graded"]
    full = [r for r in graded if all((c["points"] or 0) >= c["max"] for c in r.cells.values())]
    pending = [r for r in graded if r.manual_pending]
    lines = [f"## Grades: {len(rows)} submissions", "",
             f"{len(graded)} graded, {len(errors)} not graded; {len(full)} with every autograded cell passed, "
             f"{len(pending)} with written answers to hand-grade.", ""]
    if errors:
        lines += [f"### Not graded ({len(errors)}): grade them again once fixed", "",
                  "| student | why |", "|---|---|"]
        lines += [f"| {code_span(r.student)} | {code_span(r.error)} |" for r in errors]
        lines.append("")
    failed: dict[str, list[int]] = {}
    for row in graded:
        for grade_id, cell in filter(lambda item: item[1]["max"], row.cells.items()):
            counts = failed.setdefault(grade_id, [0, 0, cell["max"]])
            counts[0] += (cell["points"] or 0) < cell["max"]
            counts[1] += 1
    if failed:
        lines += ["### Failures by cell", "", "| test cell | points | failed | of graded |", "|---|---:|---:|---:|"]
        lines += [f"| {code_span(g)} | {_points(m)} | {n} | {of} |" for g, (n, of, m) in failed.items()]
        lines.append("")
    lines += ["### Every submission", "", "| student | status | score | tests | written | failed cells |",
              "|---|---|---:|---:|---:|---|"]
    for row in rows:
        if row.status != "graded":
            lines.append(f"| {code_span(row.student)} | not graded | - | - | - | see above |")
            continue
        code, code_max = _code_points(row)
        lost = ", ".join(g.removeprefix("test_") for g, c in row.cells.items() if (c["points"] or 0) < c["max"])
        lines.append(f"| {code_span(row.student)} | graded | {_points(row.score)}/{_points(row.max_score)} | "
                     f"{_points(code)}/{_points(code_max)} | {row.manual_pending} todo | "
                     f"{code_span(lost, limit=1000) if lost else '-'} |")
    return "\n".join(lines) + "\n"


def write(rows: Iterable[Row], out: Path) -> tuple[Path, Path]:
    """Write ``junit.xml`` and ``summary.md`` into ``out``; return their paths."""
    rows = list(rows)
    junit(rows).write(str(out / JUNIT))
    (out / SUMMARY).write_text(summary(rows), encoding="utf-8")
    return out / JUNIT, out / SUMMARY


def append_step_summary(markdown: str, environ: Mapping[str, str] = os.environ,
                        limit: int = STEP_SUMMARY_LIMIT) -> Path | None:
    """Append ``markdown`` to the file GitHub Actions shows on the run's page (``$GITHUB_STEP_SUMMARY``), if set;
    cut at a line end if it is longer than ``limit`` bytes (GitHub refuses a step summary over 1 MiB)."""
    target = environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    if len(markdown.encode("utf-8")) > limit:
        kept = markdown.encode("utf-8")[:limit - len(CUT.encode("utf-8"))].decode("utf-8", "ignore")
        markdown = kept[:kept.rfind("\n") + 1] + CUT
    with open(target, "a", encoding="utf-8") as file:
        file.write(markdown)
    return Path(target)
