"""nbgrader's exchange inbound folder, read as a hostile place: which entries are submissions of the assignment,
each student's latest, and a private copy of one entry for ``nbgrader collect``.

On a hub every student can write into the inbound folder. An entry is skipped, with the reason, when its name is
not nbgrader's ``<student>+<assignment>+<timestamp>[+<random>]``, its student id is one nbgrader cannot use (a
glob pattern, a list separator, a control character), its timestamp is unreadable or in the future (it would win
over every later submission), it is a symbolic link or not a folder, or (with ``require_owner``) the Unix user
owning it is not the student it names. ``snapshot`` copies an entry without following any link (nbgrader's
collect would copy the target of a link, e.g. the instructor's solution notebook, as the student's work), within
size limits, into a folder only the grader writes.
"""
from __future__ import annotations

import datetime
import functools
import os
import pwd
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from autograder.course.submissions import _folder_name_problem, shown

FUTURE_SLACK = datetime.timedelta(minutes=5)   # clocks of the students' servers may run a little ahead
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"           # fixed width (see time_text): these strings sort as the times do
COMPLETE = ("timestamp.txt", "submission_secret.txt")   # nbgrader submit writes them after the notebooks


@dataclass(frozen=True)
class Entry:
    """One submission in the inbound folder: its folder name, the student it names, nbgrader's timestamp (UTC)."""
    name: str
    student: str
    timestamp: str   # TIME_FORMAT, UTC


@dataclass
class Scan:
    """The inbound folder at one moment: each student's latest complete entry, and the skipped ones with why."""
    latest: dict[str, Entry] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    incomplete: list[str] = field(default_factory=list)   # still being written by nbgrader submit


def parse_name(name: str, assignment: str, now: datetime.datetime | None = None) -> Entry | str | None:
    """The entry ``name`` names, or why it cannot be graded; None if it is another assignment's."""
    parts = name.split("+")
    if len(parts) < 3 or parts[1] != assignment:
        return None if len(parts) >= 3 else f"{shown(name)}: not an nbgrader submission name (student+assignment+time)"
    if len(parts) > 4:
        return f"{shown(name)}: a student id with '+' (nbgrader refuses those)"
    student = parts[0]
    problem = _folder_name_problem(student) if student else "an empty student id"
    if problem or len(student) > 128:
        return f"{shown(name)}: {problem or 'a student id longer than 128 characters'}"
    if not name.isprintable():   # a line break would forge log lines; a byte not UTF-8 cannot enter the queue
        return f"{shown(name)}: a control character or a byte that is not UTF-8 in the name"
    when = _parse_time(parts[2])
    if when is None:
        return f"{shown(name)}: the timestamp {shown(parts[2])!r} is not a date"
    now = now or datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    if when > now + FUTURE_SLACK:
        return f"{shown(name)}: dated in the future ({when:%Y-%m-%d %H:%M} UTC), it would win over every later submission"
    return Entry(name, student, time_text(when))


@functools.lru_cache(maxsize=1 << 16)
def _parse_time(text: str) -> datetime.datetime | None:
    """nbgrader's reading of a timestamp (naive, UTC); None if it is not a date. Cached: dateutil takes about a
    millisecond a name, and the service reads every name again on each scan (thousands of entries a student made
    took seconds of CPU a scan)."""
    from nbgrader.utils import parse_utc
    try:
        return parse_utc(text)
    except (ValueError, OverflowError, TypeError):
        return None


def time_text(when: datetime.datetime) -> str:
    """``when`` (naive, UTC) in TIME_FORMAT with a 4-digit year: ``strftime`` writes the year 900 as '900', which
    would sort after '2026' and win over every later submission."""
    return when.isoformat(sep=" ", timespec="microseconds")


def written_time(folder: Path) -> str | None:
    """The time (TIME_FORMAT, UTC) that ``folder/timestamp.txt`` says; None if it says no date. nbgrader's
    ``collect --update`` compares the next submission's name with it: a student who writes a later date there
    would have every later submission skipped."""
    from nbgrader.utils import parse_utc
    try:
        with open(folder / "timestamp.txt", "rb") as file:
            text = file.read(200).decode("utf-8", "replace").strip()
        return time_text(parse_utc(text))
    except (OSError, ValueError, OverflowError, TypeError, AttributeError):
        return None


def owner_problem(entry: Entry, uid: int) -> str:
    """Why ``uid``, the Unix owner of ``entry``, is not the student it names; empty if it is."""
    try:
        owner = pwd.getpwuid(uid).pw_name
    except KeyError:
        owner = f"uid {uid}"
    return "" if owner == entry.student else f"{shown(entry.name)}: names {entry.student} but belongs to {shown(owner)}"


def scan(inbound: Path, assignment: str, require_owner: bool = False) -> Scan:
    """Read ``inbound`` (one listing, nothing followed): every student's latest complete entry of ``assignment``."""
    found = Scan()
    for name in sorted(os.listdir(inbound)):
        entry = parse_name(name, assignment)
        if entry is None:
            continue
        if isinstance(entry, str):
            found.skipped[name] = entry
            continue
        try:
            status = os.lstat(inbound / name)   # the one look at it: a second could find it removed meanwhile
        except FileNotFoundError:   # removed meanwhile
            continue
        mode = status.st_mode
        if not stat.S_ISDIR(mode):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a folder"
            found.skipped[name] = f"{shown(name)}: {kind}; nbgrader submit makes a folder"
            continue
        problem = owner_problem(entry, status.st_uid) if require_owner else ""
        if problem:
            found.skipped[name] = problem
            continue
        if not all(os.path.lexists(inbound / name / part) for part in COMPLETE):
            found.incomplete.append(name)
            continue
        best = found.latest.get(entry.student)
        if best is None or (entry.timestamp, entry.name) > (best.timestamp, best.name):
            found.latest[entry.student] = entry
    return found


class RefusedEntry(Exception):
    """An entry ``snapshot`` would not copy (a link, a special file, too large); the message says which part."""


@dataclass
class _Budget:
    bytes_left: int
    files_left: int


def snapshot(inbound: Path, entry: Entry, dest: Path, max_bytes: int, max_files: int = 200) -> None:
    """Copy the folder ``inbound/<entry>`` to ``dest`` (which must not exist) through file descriptors opened without
    following links, refusing the whole entry if any part is a link or a special file, or it exceeds the limits."""
    try:
        top = os.open(inbound, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
        finally:
            os.close(top)
    except OSError as error:
        raise RefusedEntry(f"{shown(entry.name)}: not a folder that can be opened without following a link "
                           f"({error.strerror})") from None
    try:
        _copy_folder(fd, dest, shown(entry.name), _Budget(max_bytes, max_files), depth=0)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        os.close(fd)


def _copy_folder(fd: int, dest: Path, label: str, budget: _Budget, depth: int) -> None:
    if depth > 8:
        raise RefusedEntry(f"{label}: folders nested more than 8 deep")
    dest.mkdir(mode=0o700)
    for name in sorted(os.listdir(fd)):
        where = f"{label}/{shown(name)}"
        try:
            child = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        except OSError as error:   # ELOOP: a symbolic link
            raise RefusedEntry(f"{where}: a symbolic link or unreadable ({error.strerror}); links are never "
                               "followed") from None
        try:
            mode = os.fstat(child).st_mode
            budget.files_left -= 1
            if budget.files_left < 0:
                raise RefusedEntry(f"{label}: more files than a submission has")
            if stat.S_ISDIR(mode):
                _copy_folder(child, dest / name, where, budget, depth + 1)
            elif stat.S_ISREG(mode):
                _copy_file(child, dest / name, where, budget)
            else:
                raise RefusedEntry(f"{where}: not a regular file or folder (a pipe, socket or device)")
        finally:
            os.close(child)


def _copy_file(fd: int, dest: Path, label: str, budget: _Budget) -> None:
    with open(dest, "xb") as out:
        while chunk := os.read(fd, 1 << 20):
            budget.bytes_left -= len(chunk)
            if budget.bytes_left < 0:
                raise RefusedEntry(f"{label}: the submission is larger than the limit "
                                   "(c.AutoGrading.max_submission_mb)")
            out.write(chunk)
