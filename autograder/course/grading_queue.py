"""The grading service's queue, kept in an SQLite file in the course so that it survives a restart.

One row per student (a resubmission replaces the student's waiting one and goes to the back: no student holds
more than one place, however often they submit), taken in arrival order. A row being graded when the service
stopped is graded again on the next start (``recover``); grading is idempotent (``nbgrader autograde --force``
replaces the student's one submission in the gradebook). ``finish`` records the outcome and removes the row in one
transaction, and only if no newer submission of the student replaced it meanwhile.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from autograder.course.inbound import Entry

SCHEMA = """
CREATE TABLE IF NOT EXISTS waiting (
    student TEXT PRIMARY KEY, entry TEXT NOT NULL, timestamp TEXT NOT NULL, queued_at REAL NOT NULL,
    grading INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS graded (
    entry TEXT PRIMARY KEY, student TEXT NOT NULL, timestamp TEXT NOT NULL, status TEXT NOT NULL,
    score REAL, max_score REAL, manual_pending INTEGER, feedback_released INTEGER NOT NULL, detail TEXT,
    graded_at REAL NOT NULL, seconds REAL);
"""


@dataclass(frozen=True)
class Outcome:
    """What grading one entry gave: "graded" or "error", the scores, whether its feedback was released."""
    status: str
    score: float = 0.0
    max_score: float = 0.0
    manual_pending: int = 0
    feedback_released: bool = False
    detail: str = ""
    seconds: float = 0.0


class GradingQueue:
    """The queue in ``path`` (created if missing). Every method is one transaction."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def recover(self) -> list[str]:
        """Put back the rows whose grading a stop interrupted; return their entries."""
        with self._transaction():
            names = [r[0] for r in self._db.execute("SELECT entry FROM waiting WHERE grading = 1")]
            self._db.execute("UPDATE waiting SET grading = 0")
        return names

    def offer(self, entry: Entry) -> bool:
        """Queue ``entry`` unless it was graded already or is not newer than the student's queued or graded one;
        it replaces the student's waiting row. True if it was queued."""
        with self._transaction():
            if self._db.execute("SELECT 1 FROM graded WHERE entry = ?", (entry.name,)).fetchone():
                return False
            newest = self._db.execute(
                "SELECT MAX(timestamp || '+' || entry) FROM (SELECT timestamp, entry FROM waiting WHERE student = ? "
                "UNION ALL SELECT timestamp, entry FROM graded WHERE student = ?)",
                (entry.student, entry.student)).fetchone()[0]
            if newest is not None and newest >= f"{entry.timestamp}+{entry.name}":
                return False
            self._db.execute("INSERT OR REPLACE INTO waiting VALUES (?, ?, ?, ?, 0)",
                             (entry.student, entry.name, entry.timestamp, time.time()))
            return True

    def take(self) -> Entry | None:
        """The longest-waiting row not being graded, now marked as being graded; None if there is none."""
        with self._transaction():
            row = self._db.execute("SELECT entry, student, timestamp FROM waiting WHERE grading = 0 "
                                   "ORDER BY queued_at, student LIMIT 1").fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE waiting SET grading = 1 WHERE student = ?", (row[1],))
            return Entry(*row)

    def finish(self, entry: Entry, outcome: Outcome) -> None:
        """Record ``outcome`` for ``entry`` and remove its row, unless a newer submission replaced it meanwhile."""
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO graded VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (entry.name, entry.student, entry.timestamp, outcome.status, outcome.score,
                              outcome.max_score, outcome.manual_pending, int(outcome.feedback_released),
                              outcome.detail, time.time(), outcome.seconds))
            self._db.execute("DELETE FROM waiting WHERE student = ? AND entry = ?", (entry.student, entry.name))

    def waiting(self) -> list[Entry]:
        """The queue in the order it will be graded (a row being graded first)."""
        rows = self._db.execute("SELECT entry, student, timestamp FROM waiting ORDER BY grading DESC, queued_at, "
                                "student").fetchall()
        return [Entry(*row) for row in rows]

    def graded(self) -> list[dict]:
        """Every graded entry with its outcome, oldest first."""
        cursor = self._db.execute("SELECT * FROM graded ORDER BY graded_at")
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _transaction(self):
        return _Transaction(self._db)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an error): a writer at a time, all or nothing."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, traceback) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")
