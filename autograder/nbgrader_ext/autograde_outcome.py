"""Which students of a batch ``nbgrader autograde`` did not grade, with nbgrader's own message for each.

nbgrader 0.9.6 goes on after one student's error: it logs "There was an error processing assignment: <folder>"
with the traceback, removes that student's autograded copy, names the student at the end and exits with 1. On
some errors (metadata of another schema version, the database) it stops the whole run instead. Either way the
gradebook keeps what an earlier batch wrote for those students, so it cannot tell. A student counts as autograded
only if nbgrader wrote a new autograded notebook for it during this run and did not name it in its log.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from autograder.course.submissions import ASSIGNMENT, NOTEBOOK

_RECORD = re.compile(r"^\[(?P<app>[^|\]]+) \| (?P<level>[A-Z]+)\] (?P<message>.*)$")
_FAILED_AT = re.compile(r"There was an error processing assignment: (?P<folder>.+)$")
_FAILED_FOR = re.compile(r"There was an error processing assignment '.*' for student '(?P<student>.*)'$")


def autograded_copy(root: Path, student: str) -> Path:
    return root / "autograded" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns


def before_autograde(root: Path, students: list[str]) -> dict[str, tuple[int, int] | None]:
    """Each student's autograded notebook as it is before nbgrader runs (None: there is none)."""
    return {student: _signature(autograded_copy(root, student)) for student in students}


def failures(root: Path, before: dict[str, tuple[int, int] | None], log: str) -> dict[str, str]:
    """Student -> nbgrader's reason, for every student of ``before`` that nbgrader autograde did not grade."""
    messages, named, last_error = _read_log(log)
    failed = {}
    for student, earlier in before.items():
        now = _signature(autograded_copy(root, student))
        if student in named or now is None or now == earlier:
            failed[student] = messages.get(student) or (
                f"nbgrader stopped before grading it: {last_error}" if last_error else
                "nbgrader wrote no autograded notebook for it")
    return failed


def _read_log(log: str) -> tuple[dict[str, str], set[str], str]:
    """nbgrader's log as (student -> the exception it failed with, students it named as failed, the last error)."""
    records: list[tuple[str, list[str]]] = []   # (level, lines)
    open_record = False
    for line in log.splitlines():
        match = _RECORD.match(line)
        if match:
            records.append((match["level"], [match["message"].strip()]))
            open_record = True
        elif open_record and line[:1].isspace():   # nbgrader indents a record's next lines (a traceback's)
            if line.strip():
                records[-1][1].append(line.strip())
        else:   # anything else on stderr (a Python warning) ends the record
            open_record = False
    messages, named, last_error, student = {}, set(), "", None
    for level, lines in records:
        if level != "ERROR":
            continue
        at, named_for = _FAILED_AT.search(lines[0]), _FAILED_FOR.search(lines[0])
        if at:
            student = Path(at["folder"].strip()).parent.name   # <submitted>/<student>/<assignment>
        elif named_for:
            named.add(named_for["student"])
        elif lines[0].startswith("Traceback") and student is not None:
            messages[student] = lines[-1][:300]
            student = None
        elif not lines[0].startswith("Please see"):
            last_error = " ".join(lines)[:300]
    return messages, named, last_error
