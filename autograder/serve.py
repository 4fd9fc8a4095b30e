"""The grading service: ``python -m autograder.serve [--root COURSE]`` grades each submission as it arrives.

It watches nbgrader's exchange inbound folder (``<c.Exchange.root>/<course_id>/inbound``) with watchdog, and
rescans it every ``c.AutoGrading.rescan_s`` seconds (file systems without events, e.g. NFS). For each student's
latest submission it
1. copies the entry, without following links, into ``autograding/exchange/`` of the course (``course/inbound.py``),
2. runs nbgrader's own ``collect --update`` of that one student from there into ``submitted/``,
3. grades it with the grade command's ``grade`` (sandboxed workers: this process never runs student code;
   hand-graded scores are kept), and
4. with ``c.AutoGrading.release_feedback = True`` writes the feedback of the autograded part and runs nbgrader's
   ``release_feedback`` for that student, so that ``nbgrader fetch_feedback`` (the Assignments tab) shows it.
Submissions wait in a queue that survives a restart (``course/grading_queue.py``, ``autograding/queue.db``): one
place per student, the latest submission (nbgrader's timestamp) wins. docs/grading-service.md has the rest.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from traitlets import Bool, Float, Int
from traitlets.config import Configurable

from autograder.boundary import isolation
from autograder.boundary.sandbox import Limits
from autograder.course.gradebook import database_url, require_reachable
from autograder.course.grading_queue import GradingQueue, Outcome
from autograder.course.inbound import TIME_FORMAT, Entry, RefusedEntry, Scan, scan, snapshot, written_time
from autograder.course.nbgrader_commands import COURSE_ROOT, scripts_first_on_path
from autograder.course.submissions import ASSIGNMENT, NOTEBOOK, shown
from autograder.grade import course_config, course_lock, course_limits, grade
from autograder.nbgrader_ext.app import run_nbgrader

log = logging.getLogger("autograder.serve")
STATE = "autograding"   # the service's folder in the course root
MAX_SKIPPED_LOGGED = 10    # new skipped entries named in the log a scan
MIN_SCAN_INTERVAL_S = 1.0  # a storm of changes in the inbound folder wakes the service at most this often
INCOMPLETE_WAIT_S = 60.0   # nbgrader submit writes an entry in seconds; an entry incomplete longer is left to rescans


class AutoGrading(Configurable):
    """``c.AutoGrading`` in nbgrader_config.py: what the grading service does."""
    release_feedback = Bool(False, help="Release the feedback of the autograded part as soon as a submission is "
                            "graded (written answers not yet hand-graded show 0 points in it).").tag(config=True)
    rescan_s = Float(30.0, help="Seconds between two full rescans of the inbound folder (besides watchdog's "
                     "events, which file systems such as NFS do not deliver).").tag(config=True)
    max_submission_mb = Float(100.0, help="A submission larger than this is not graded.").tag(config=True)
    max_files = Int(200, help="A submission with more files and folders than this is not graded.").tag(config=True)
    require_owner = Bool(False, help="Grade an entry only if the Unix user owning it is the student it names "
                         "(hubs where each student has a Unix account of their own).").tag(config=True)


def exchange_root(config) -> Path:
    """The exchange folder of the course config (nbgrader's default if it names none)."""
    from nbgrader.exchange.default.exchange import Exchange
    return Path(config.get("Exchange", {}).get("root", Exchange.root.default_value))


class Service:
    """The grading service of the course in ``root``; ``poll`` and ``grade_next`` are one step each of ``run``."""

    def __init__(self, root: Path, db_url: str | None = None, limits: Limits | None = None):
        scripts_first_on_path()
        self.root = root.resolve()
        self.config = course_config(self.root)
        self.settings = AutoGrading(config=self.config)
        self.limits = limits or course_limits(self.config)
        self.db_url = database_url(db_url, self.root)
        require_reachable(self.db_url)
        self.course_id = self.config.get("CourseDirectory", {}).get("course_id", "")
        if not self.course_id:
            raise SystemExit("not serving: the course config sets no c.CourseDirectory.course_id (the exchange "
                             "keeps submissions per course)")
        self.exchange = exchange_root(self.config)
        self.inbound = self.exchange / self.course_id / "inbound"
        self.state = self.root / STATE
        self.queue = GradingQueue(self.state / "queue.db")
        self._reported: dict[str, str] = {}   # messages logged once each
        self._skipped: dict[str, str] = {}    # the entries skipped at the last scan, and why
        self._incomplete_since: dict[str, float] = {}   # entries seen incomplete: since when (monotonic)
        self.wake = threading.Event()         # set by watchdog's events and by a stop

    def poll(self) -> Scan:
        """Read the inbound folder; queue each student's latest submission not graded yet; log skipped entries."""
        if not self.inbound.is_dir():
            self._once("inbound", f"no inbound folder at {self.inbound} yet (nbgrader release_assignment makes it)")
            return Scan()
        found = scan(self.inbound, ASSIGNMENT, self.settings.require_owner)
        self._log_skipped(found.skipped)
        for entry in found.latest.values():
            if self.queue.offer(entry):
                log.info("queued %s (%s); %d waiting", entry.student, entry.name, len(self.queue.waiting()))
        return found

    def grade_next(self) -> bool:
        """Grade the longest-waiting submission; False if none is waiting."""
        entry = self.queue.take()
        if entry is None:
            return False
        log.info("grading %s (%s)", entry.student, entry.name)
        start = time.monotonic()
        try:
            outcome = self._grade(entry)
        except (SystemExit, KeyboardInterrupt):
            raise   # the grader refuses to grade here (no sandbox, changed code): the entry stays queued
        except Exception as error:   # noqa: BLE001 (one submission must not stop the service)
            log.exception("grading %s failed", entry.name)
            outcome = Outcome("error", detail=f"{type(error).__name__}: {error}")
        outcome = Outcome(**{**vars(outcome), "seconds": round(time.monotonic() - start, 1)})
        self.queue.finish(entry, outcome)
        self._log_outcome(entry, outcome)
        return True

    def drain(self) -> None:
        """Grade every submission waiting now (and any that arrives meanwhile), then return."""
        self.poll()
        while self.grade_next():
            self.poll()

    def run(self, stop: threading.Event) -> None:
        """Grade submissions as they arrive until ``stop`` is set."""
        for name in self.queue.recover():
            log.info("grading of %s was interrupted by a stop: it is graded again", name)
        wake = self.wake
        observer = None
        try:
            last_scan = -MIN_SCAN_INTERVAL_S
            while not stop.is_set():
                if observer is None and self.inbound.is_dir():
                    observer = _watch(self.inbound, wake)
                if stop.wait(last_scan + MIN_SCAN_INTERVAL_S - time.monotonic()):
                    break
                last_scan = time.monotonic()
                found = self.poll()
                if self.grade_next():
                    continue
                wake.wait(timeout=self._rescan_in(found))
                wake.clear()
        finally:
            if observer is not None:
                observer.stop()
                observer.join(timeout=5)

    def _rescan_in(self, found: Scan) -> float:
        """Seconds until the next scan: 1 while an entry seen incomplete for less than INCOMPLETE_WAIT_S may be
        being written by nbgrader submit, else ``rescan_s`` (an entry left incomplete, e.g. thousands of empty
        folders, would have the whole folder read every second for ever)."""
        now = time.monotonic()
        self._incomplete_since = {name: self._incomplete_since.get(name, now) for name in found.incomplete}
        recent = any(now - since < INCOMPLETE_WAIT_S for since in self._incomplete_since.values())
        return 1.0 if recent else self.settings.rescan_s

    def _grade(self, entry: Entry) -> Outcome:
        staging = self.state / "exchange"
        inbound = staging / self.course_id / "inbound"
        shutil.rmtree(inbound, ignore_errors=True)
        inbound.mkdir(parents=True)
        try:
            snapshot(self.inbound, entry, inbound / entry.name, int(self.settings.max_submission_mb * 1e6),
                     self.settings.max_files)
        except RefusedEntry as error:
            return Outcome("error", detail=str(error))
        if written_time(inbound / entry.name) != entry.timestamp:   # nbgrader submit writes the two alike
            return Outcome("error", detail=f"{entry.student}: timestamp.txt does not say the time of the entry's "
                           "name (nbgrader collect would compare every later submission with it)")
        db = f"--CourseDirectory.db_url={self.db_url}"
        with course_lock(self.root):
            collected = run_nbgrader(["collect", ASSIGNMENT, f"--student={entry.student}", "--update",
                                      f"--Exchange.root={staging}", db], self.root)
        notebooks = self.root / "submitted" / entry.student / ASSIGNMENT
        if collected.returncode != 0 or not notebooks.is_dir():
            return Outcome("error", detail=f"nbgrader collect failed: {collected.stderr[-2000:]}")
        if written_time(notebooks) != entry.timestamp:   # collect kept what submitted/ held: not this submission
            return Outcome("error", detail=f"nbgrader collect did not replace submitted/{entry.student}/{ASSIGNMENT} "
                           "(its timestamp.txt is not this submission's): not graded")
        batch = self.state / "batch"
        shutil.rmtree(batch, ignore_errors=True)
        (batch / entry.student).mkdir(parents=True)
        shutil.copytree(notebooks, batch / entry.student / ASSIGNMENT, symlinks=True,
                        ignore=lambda folder, names: [n for n in names if not n.endswith(".ipynb")])
        feedback = self.settings.release_feedback
        rows = grade(batch, self.root, out=self.state / "grades", workers=1, db_url=self.db_url, limits=self.limits,
                     feedback=feedback, feedback_with_pending=True)
        row = rows.get(entry.student) or next(iter(rows.values()), None)
        if row is None or row.status != "graded":
            return Outcome("error", detail=row.error if row else "the grade command graded nothing")
        released = bool(feedback and row.feedback) and self._release_feedback(entry.student)
        return Outcome("graded", row.score, row.max_score, row.manual_pending, released)

    def _release_feedback(self, student: str) -> bool:
        with course_lock(self.root):
            result = run_nbgrader(["release_feedback", ASSIGNMENT, f"--student={student}",
                                   f"--Exchange.root={self.exchange}", f"--CourseDirectory.db_url={self.db_url}"],
                                  self.root)
        if result.returncode != 0:
            log.error("nbgrader release_feedback failed for %s: %s", student, result.stderr[-2000:])
        return result.returncode == 0

    def _log_outcome(self, entry: Entry, outcome: Outcome) -> None:
        submitted = datetime.datetime.strptime(entry.timestamp, TIME_FORMAT).replace(tzinfo=datetime.timezone.utc)
        since = (datetime.datetime.now(datetime.timezone.utc) - submitted).total_seconds()
        if outcome.status == "graded":
            log.info("graded %s (%s): %g/%g points, %d written answer(s) to hand-grade, feedback %s; %.1f s grading, "
                     "%.0f s after submission", entry.student, entry.name, outcome.score, outcome.max_score,
                     outcome.manual_pending, "released" if outcome.feedback_released else "not released",
                     outcome.seconds, since)
        else:
            # escaped: the detail may name the student's files, and a line break in one would forge log lines
            log.warning("not graded %s (%s): %s", entry.student, entry.name, shown(outcome.detail))

    def _log_skipped(self, skipped: dict[str, str]) -> None:
        """Log each skipped entry once, at most MAX_SKIPPED_LOGGED new ones a scan (the rest counted in one line),
        remembering only the entries still there: a student making and removing odd entries in a loop would
        otherwise grow the log, and this memory, without end."""
        new = [reason for name, reason in skipped.items() if self._skipped.get(name) != reason]
        for reason in new[:MAX_SKIPPED_LOGGED]:
            log.warning("skipped %s", reason)
        if len(new) > MAX_SKIPPED_LOGGED:
            log.warning("skipped %d more entries (not named here)", len(new) - MAX_SKIPPED_LOGGED)
        self._skipped = dict(skipped)

    def _once(self, key: str, message: str) -> None:
        if self._reported.get(key) != message:
            self._reported[key] = message
            log.warning(message)


def _watch(folder: Path, wake: threading.Event):
    """A watchdog observer that sets ``wake`` on any change in ``folder`` (its events are only a hint to rescan)."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    class Hint(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            wake.set()

    observer = Observer()
    observer.schedule(Hint(), str(folder), recursive=False)
    observer.start()
    return observer


def _setup_logging(state: Path) -> None:
    state.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S UTC")
    formatter.converter = time.gmtime
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(state / "service.log")):
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=COURSE_ROOT, help="course root (nbgrader_config.py, source/)")
    parser.add_argument("--db", help="gradebook URL (default: sqlite:///<root>/gradebook.db)")
    parser.add_argument("--once", action="store_true", help="grade what is waiting now, then exit")
    parser.add_argument("--unsafe-no-sandbox", action="store_true",
                        help="run student code without the grading sandbox (trusted code only)")
    args = parser.parse_args(argv)
    _setup_logging(args.root.resolve() / STATE)
    limits = course_limits(course_config(args.root), sandbox="none" if args.unsafe_no_sandbox else None)
    try:
        isolation.require(limits.sandbox)
    except isolation.SandboxUnavailable as error:
        raise SystemExit(f"not serving: {error}") from None
    service = Service(args.root, args.db, limits)
    log.info("serving %s: watching %s (rescan every %g s), feedback %s, %d waiting", service.root, service.inbound,
             service.settings.rescan_s, "released" if service.settings.release_feedback else "not released",
             len(service.queue.waiting()))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: (stop.set(), service.wake.set()))
    if args.once:
        service.queue.recover()
        service.drain()
        return
    try:
        service.run(stop)
    except KeyboardInterrupt:
        pass
    log.info("stopped; %d waiting", len(service.queue.waiting()))


if __name__ == "__main__":
    main()
