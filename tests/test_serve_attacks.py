"""Attacks of a hostile student on the grading service (autograder/serve.py) through the inbound folder, found by
trying them: each test fails with the corresponding fix reverted. The grading itself is replaced by a stand-in
that records which notebook it got (the sandboxed grading is covered by tests/test_serve.py)."""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_serve import COURSE_ID, course_copy, entry, fake_submission, stamp

from autograder import serve
from autograder.course import inbound
from autograder.course.grading_queue import GradingQueue
from autograder.course.inbound import TIME_FORMAT, parse_name, scan
from autograder.grade import ASSIGNMENT, NOTEBOOK


def submission(folder: Path, student: str, text: str, when: str, written_time: str | None = None) -> str:
    """An inbound entry named for ``when`` whose notebook holds ``text``; ``timestamp.txt`` says ``written_time``
    (``when`` if None, as nbgrader submit writes it)."""
    name = f"{student}+{ASSIGNMENT}+{when}"
    (folder / name).mkdir()
    (folder / name / f"{NOTEBOOK}.ipynb").write_text(json.dumps({"text": text}))
    (folder / name / "timestamp.txt").write_text(written_time or when)
    (folder / name / "submission_secret.txt").write_text("s")
    return name


@pytest.fixture
def service(tmp_path, monkeypatch):
    """A Service on a course copy whose ``grade`` records the notebook it was given (``service.graded_texts``)."""
    monkeypatch.delenv("NBGRADER_EXCHANGE", raising=False)
    root = course_copy(tmp_path / "course")
    (root / "exchange" / COURSE_ID / "inbound").mkdir(parents=True)
    texts: list[str] = []

    def fake_grade(batch: Path, *args, **kwargs) -> dict:
        (student,) = os.listdir(batch)
        texts.append(json.loads((batch / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb").read_text())["text"])
        return {student: SimpleNamespace(status="graded", score=1.0, max_score=22.0, manual_pending=0,
                                         feedback=None, error="")}

    monkeypatch.setattr(serve, "grade", fake_grade)
    made = serve.Service(root)
    made.graded_texts = texts
    return made


# --- timestamps ---------------------------------------------------------------------------------------------------

def test_a_timestamp_before_the_year_1000_does_not_win_over_later_submissions(tmp_path):
    """``strftime('%Y')`` writes year 900 as '900', which sorts after '2026' as a string: a submission dated in the
    year 900 won over every later one (the queue never took the student's, or a victim's, later submissions)."""
    folder = tmp_path / "inbound"
    folder.mkdir()
    ancient = submission(folder, "alice", "ancient", "0900-01-01 00:00:00.000000 UTC")
    real = fake_submission(folder, "alice", minutes_ago=1)
    assert scan(folder, ASSIGNMENT).latest["alice"].name == real
    queue = GradingQueue(tmp_path / "queue.db")
    assert queue.offer(entry(ancient)) and queue.offer(entry(real)), "a real later submission lost to year 900"
    parsed = parse_name(ancient, ASSIGNMENT)
    assert datetime.datetime.strptime(parsed.timestamp, TIME_FORMAT).year == 900


def test_a_submission_dated_in_the_year_900_does_not_stop_the_service(service):
    """Logging its outcome read the timestamp back with ``strptime``, which needs 4 digits: the service died."""
    submission(service.inbound, "mallory", "old", "0900-01-01 00:00:00.000000 UTC")
    service.drain()
    assert [g["status"] for g in service.queue.graded()] == ["graded"]
def test_a_timestamp_txt_from_the_future_does_not_freeze_later_submissions(service):
    """nbgrader's ``collect --update`` compares the new entry's name with ``timestamp.txt`` of the submission
    collected before, a file the student wrote: one dated 9999 made collect skip every later submission of that
    student, and the service graded the old notebook again under the new entry. Without require_owner, a student
    could so freeze another student's grade at a notebook of their own making."""
    first = submission(service.inbound, "alice", "planted", stamp(10), written_time="9999-01-01 00:00:00.000000 UTC")
    service.drain()
    later = submission(service.inbound, "alice", "her own work", stamp(1))
    service.drain()
    outcomes = {g["entry"]: g for g in service.queue.graded()}
    assert outcomes[first]["status"] == "error" and "timestamp.txt" in outcomes[first]["detail"], outcomes[first]
    assert outcomes[later]["status"] == "graded" and service.graded_texts == ["her own work"], service.graded_texts


def test_a_stale_collected_submission_is_not_graded_as_the_new_one(service):
    """Whatever made collect keep what ``submitted/`` held (a ``timestamp.txt`` left there by an earlier collect),
    the service grades only what it collected, never the older notebook under the new entry's name."""
    stale = service.root / "submitted" / "alice" / ASSIGNMENT
    stale.mkdir(parents=True)
    (stale / f"{NOTEBOOK}.ipynb").write_text(json.dumps({"text": "stale"}))
    (stale / "timestamp.txt").write_text("9999-01-01 00:00:00.000000 UTC")
    name = submission(service.inbound, "alice", "new", stamp(1))
    service.drain()
    (outcome,) = service.queue.graded()
    assert outcome["entry"] == name and outcome["status"] == "error", outcome
    assert service.graded_texts == [], "the stale notebook was graded as the new submission"


# --- races ----------------------------------------------------------------------------------------------------------

def test_an_entry_removed_during_the_owner_check_does_not_stop_the_scan(tmp_path, monkeypatch):
    """With require_owner, the scan read an entry's owner with a second ``lstat``: an entry its student removed in
    between raised FileNotFoundError out of ``poll`` and stopped the service."""
    folder = tmp_path / "inbound"
    folder.mkdir()
    name = fake_submission(folder, "alice", 1)
    real_lstat, seen = os.lstat, []

    def racing_lstat(path, *args, **kwargs):
        result = real_lstat(path, *args, **kwargs)
        if Path(path).name == name and not seen:   # the student removes it right after the first look
            seen.append(path)
            for part in os.listdir(folder / name):
                os.unlink(folder / name / part)
            os.rmdir(folder / name)
        return result

    monkeypatch.setattr(inbound.os, "lstat", racing_lstat)
    found = scan(folder, ASSIGNMENT, require_owner=True)
    assert "alice" not in found.latest


# --- names ----------------------------------------------------------------------------------------------------------

def test_a_name_not_in_utf8_does_not_stop_the_service_for_good(service):
    """A byte that is not UTF-8 after the timestamp reached the queue as a lone surrogate, which SQLite refuses:
    ``poll`` raised UnicodeEncodeError, the service stopped, and stopped again on every restart (the entry stays)."""
    good = submission(service.inbound, "alice", "work", stamp(2))
    when = stamp(1)
    bad = bytes(service.inbound) + b"/" + f"mallory+{ASSIGNMENT}+{when}+".encode() + b"\xff"
    os.mkdir(bad)
    for part, text in (("timestamp.txt", when), ("submission_secret.txt", "s"), (f"{NOTEBOOK}.ipynb", "{}")):
        Path(os.fsdecode(bad), part).write_text(text)
    service.drain()
    assert [g["entry"] for g in service.queue.graded()] == [good]


def test_a_name_with_a_line_break_cannot_forge_lines_of_the_service_log(tmp_path):
    """The part after the timestamp was logged as it is ("queued", "graded"): a line break in it wrote a line of
    the student's choosing into service.log, e.g. another student's score."""
    forged = f"mallory+{ASSIGNMENT}+{stamp(1)}+x\n2026-12-01 12:00:00 UTC INFO graded bob (...): 22/22 points"
    parsed = parse_name(forged, ASSIGNMENT)
    assert isinstance(parsed, str) and "\n" not in parsed, parsed


def test_a_notebook_name_with_a_line_break_cannot_forge_lines_of_the_service_log(tmp_path, monkeypatch, caplog):
    """Without the assignment's notebook, the grade command names the notebooks it found, as they are: one named
    with a line break wrote a line of the student's choosing into service.log (the real grading, about 30 s)."""
    monkeypatch.delenv("NBGRADER_EXCHANGE", raising=False)
    root = course_copy(tmp_path / "course")
    folder = root / "exchange" / COURSE_ID / "inbound"
    folder.mkdir(parents=True)
    name = fake_submission(folder, "mallory", 1)
    forged = "x\n2026-12-01 12:00:00 UTC INFO graded bob (bob+simclr+now): 22 points of 22"
    (folder / name / f"{NOTEBOOK}.ipynb").rename(folder / name / f"{forged}.ipynb")
    caplog.set_level("INFO", logger="autograder.serve")
    service = serve.Service(root)
    service.drain()
    (outcome,) = service.queue.graded()
    assert outcome["status"] == "error" and "22 points of 22" in outcome["detail"], outcome
    lines = "\n".join(r.getMessage() for r in caplog.records).splitlines()
    assert not any(line.startswith("2026-12-01 12:00:00 UTC INFO graded bob") for line in lines), lines


# --- unbounded work -------------------------------------------------------------------------------------------------

def test_thousands_of_names_are_not_parsed_again_on_every_scan(tmp_path, monkeypatch):
    """dateutil takes about a millisecond a name: 3000 empty folders a student made cost 3.6 s of CPU a scan, and
    the service scans on every change of the folder and every second while an entry is incomplete."""
    import nbgrader.utils
    folder = tmp_path / "inbound"
    folder.mkdir()
    names = [fake_submission(folder, f"s{i}", minutes_ago=i, complete=False) for i in range(200)]
    real, calls = nbgrader.utils.parse_utc, []
    monkeypatch.setattr(nbgrader.utils, "parse_utc", lambda text: calls.append(text) or real(text))
    for _ in range(3):
        assert sorted(scan(folder, ASSIGNMENT).incomplete) == sorted(names)
    assert len(calls) <= len(names), f"{len(calls)} parses for {len(names)} names"


def test_an_entry_left_incomplete_does_not_have_the_folder_read_every_second(service, monkeypatch):
    """An entry without timestamp.txt (nbgrader submit writes it last) made the service rescan every second, for as
    long as the entry stayed: an empty folder kept it busy for ever."""
    import threading
    fake_submission(service.inbound, "mallory", 1, complete=False)
    monkeypatch.setattr(serve, "INCOMPLETE_WAIT_S", 0.0, raising=False)   # as if it had waited long enough
    polls, poll = [], service.poll
    monkeypatch.setattr(service, "poll", lambda: polls.append(1) or poll())
    stop = threading.Event()
    timer = threading.Timer(3.5, lambda: (stop.set(), service.wake.set()))
    timer.start()
    service.run(stop)   # here: the queue's SQLite connection belongs to this thread
    timer.join()
    assert len(polls) <= 2, f"{len(polls)} scans in 3.5 s for an entry left incomplete"


def test_odd_entries_made_and_removed_in_a_loop_do_not_grow_the_log_without_end(service, caplog):
    """Each skipped entry was logged once, by name, and remembered for ever: a student making new odd entries in a
    loop grew service.log, and the service's memory, as fast as they could make them."""
    caplog.set_level("INFO", logger="autograder.serve")
    for round_ in range(3):
        names = [f"junk{round_}-{i}" for i in range(300)]
        for name in names:
            (service.inbound / name).mkdir()
        service.poll()
        for name in names:
            (service.inbound / name).rmdir()
    skipped = [r for r in caplog.records if r.getMessage().startswith("skipped")]
    assert len(skipped) <= 3 * 11, f"{len(skipped)} log lines for 900 junk entries"
    service.poll()
    assert not service._skipped, "entries no longer there are remembered"


def test_a_storm_of_changes_in_the_inbound_folder_does_not_keep_the_service_scanning(service, monkeypatch):
    """Every change in the inbound folder woke the service for a full scan at once: a student's loop touching it
    kept the service scanning back to back."""
    import threading
    polls, poll = [], service.poll
    monkeypatch.setattr(service, "poll", lambda: polls.append(1) or poll())
    stop = threading.Event()

    def storm() -> None:
        while not stop.wait(0.01):
            service.wake.set()

    threading.Thread(target=storm, daemon=True).start()
    threading.Timer(3.5, lambda: (stop.set(), service.wake.set())).start()
    service.run(stop)   # here: the queue's SQLite connection belongs to this thread
    assert len(polls) <= 5, f"{len(polls)} scans in 3.5 s"
