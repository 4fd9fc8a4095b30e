"""Find a batch's submissions and put them into ``submitted/``, refusing any that could take another's row.

Two layouts: nbgrader's (``<student>/<assignment>/<notebook>.ipynb``) or a plain folder of ``.ipynb`` files whose
names give the student ids. A submission is refused (never followed, read or copied; the reason says what to do)
when it is or lies behind a symbolic link, is not a regular file, has a folder name that nbgrader cannot use as a
student id, when two files of a plain folder become the same student id, or when a plain-folder file would replace
a submission that another file made in an earlier batch.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ASSIGNMENT, NOTEBOOK = "simclr", "simclr_lab"
# In submitted/<student>/ (outside the assignment folder, so nbgrader never sees it): the name of the plain-folder
# file the submission was made from, so that a later batch cannot replace it with another file of the same id.
ORIGIN = ".plain-folder-file"
NOT_AN_ID = re.compile(r"[,*?\[\]]")   # nbgrader splits exclusion lists at ',' and globs folder names


@dataclass
class Collected:
    """A batch's submissions: accepted notebooks by student id, refused files or folders with the reason."""
    notebooks: dict[str, Path] = field(default_factory=dict)   # student id -> notebook under submitted/
    refused: dict[str, str] = field(default_factory=dict)      # name in the submissions folder -> what to do


def student_id(stem: str) -> str:
    """The student id of a plain-folder file: its name's letters, digits and ``_ . -`` (other runs become ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "student"


def shown(name: str) -> str:
    """A file or folder name as it can be printed (control characters escaped)."""
    return name if name.isprintable() else ascii(name)[1:-1]


def collect(submissions: Path, root: Path) -> Collected:
    """Every submission in ``submissions`` (nbgrader's layout, else a plain folder) as a notebook under
    ``root/submitted``, copied there unless ``submissions`` is that folder; the refused ones with their reason."""
    submitted = root / "submitted"
    if any(submissions.glob(f"*/{ASSIGNMENT}/*.ipynb")):
        return _collect_layout(submissions, submitted)
    return _collect_plain(submissions, submitted)


def _collect_layout(submissions: Path, submitted: Path) -> Collected:
    found = Collected()
    in_place = submissions.resolve() == submitted.resolve()
    for name in sorted({p.relative_to(submissions).parts[0] for p in submissions.glob(f"*/{ASSIGNMENT}/*.ipynb")}):
        problem = _folder_name_problem(name) or _unsafe_entry(submissions, Path(name), ASSIGNMENT)
        if not problem and not in_place:
            problem = _copy_notebooks(submissions / name / ASSIGNMENT, submitted, name)
        if problem:
            found.refused[shown(name)] = problem
        else:
            found.notebooks[name] = submitted / name / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    return found


def _collect_plain(submissions: Path, submitted: Path) -> Collected:
    found = Collected()
    by_id: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(submissions.glob("*.ipynb")):
        by_id[student_id(path.stem)].append(path)
    for student, paths in by_id.items():
        problems = {path: [p] for path in paths if (p := _unsafe_entry(submissions, Path(path.name)))}
        if len(paths) > 1:
            for path in paths:
                problems.setdefault(path, []).append(_collision([shown(p.name) for p in paths], student))
        elif not problems:
            problem = _claim_problem(paths[0].name, student, submitted) or _copy_plain(paths[0], submitted, student)
            if problem:
                problems[paths[0]] = [problem]
        for path, reasons in problems.items():
            found.refused[shown(path.name)] = " ".join(reasons)
        if not problems:
            found.notebooks[student] = submitted / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    return found


def _collision(names: list[str], student: str) -> str:
    listed = " and ".join([", ".join(names[:-1]), names[-1]])
    return (f"{listed} {'both' if len(names) == 2 else 'all'} become student id '{student}' (a file's id keeps "
            "the letters, digits and _ . - of its name): none of them was graded, so that no file takes another's "
            "row. Rename the files so that each student has exactly one, under a name of their own, and grade again.")


def _folder_name_problem(name: str) -> str:
    if name.isprintable() and not name.startswith(".") and not NOT_AN_ID.search(name):
        return ""
    return (f"the folder name '{shown(name)}' cannot be a student id (nbgrader reads ',' as a list separator and "
            "'*?[]' as patterns; control characters and a leading '.' are refused too): nothing of it was read or "
            "graded. Rename the folder and grade again.")


def _unsafe_entry(top: Path, relative: Path, walk: str = "") -> str:
    """Why ``top/relative`` (and, if ``walk`` is given, everything under ``top/relative/walk``) cannot be read
    safely: a symbolic link or a special file; empty if nothing is wrong. Nothing is followed."""
    pending = [relative]
    while pending:
        entry = pending.pop()
        try:
            mode = os.lstat(top / entry).st_mode
            target = os.readlink(top / entry) if stat.S_ISLNK(mode) else ""
        except OSError as error:
            return f"{shown(str(entry))} could not be read ({error.strerror}): not graded. Grade again."
        if stat.S_ISLNK(mode):
            return (f"{shown(str(entry))} is a symbolic link (to {shown(target)}); links are never followed, so "
                    "nothing of it was read or graded. Put the student's own files there (copies, not links) and "
                    "grade again.")
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return (f"{shown(str(entry))} is not a regular file or folder (a pipe, socket or device): nothing of it "
                    "was read or graded. Put the student's own files there and grade again.")
        if stat.S_ISDIR(mode) and walk:
            if entry == relative:
                pending.append(entry / walk)
            else:
                pending.extend(entry / child for child in sorted(os.listdir(top / entry)))
    return ""


def _claim_problem(name: str, student: str, submitted: Path) -> str:
    """Why the plain-folder file ``name`` may not replace the submission of ``student`` made in an earlier batch:
    only the file that made it may, or, for a submission in nbgrader's layout, a file named exactly ``<id>.ipynb``."""
    if not os.path.lexists(submitted / student / ASSIGNMENT):
        return ""
    origin = _read_text(submitted / student / ORIGIN)
    if origin == name or (origin is None and name == f"{student}.ipynb"):
        return ""
    made_from = f"made from {shown(origin)} in an earlier batch" if origin is not None else \
        "in nbgrader's layout, or made by a grader that did not record its file"
    same = f"name this one {shown(origin)} as before" if origin is not None else f"name this one {student}.ipynb"
    return (f"{shown(name)} becomes student id '{student}', which already has a submission (submitted/{student}, "
            f"{made_from}): not graded, so that no file takes another's row. If both are the same student's, {same}; "
            "otherwise give this file a name of its own; then grade again.")


def _copy_plain(path: Path, submitted: Path, student: str) -> str:
    problem = _copy_file(path, submitted, student, ASSIGNMENT, f"{NOTEBOOK}.ipynb")
    return problem or _write(submitted, (student, ORIGIN), os.fsencode(path.name))


def _copy_notebooks(folder: Path, submitted: Path, student: str) -> str:
    for path in sorted(folder.glob("*.ipynb")):
        problem = _copy_file(path, submitted, student, ASSIGNMENT, path.name)
        if problem:
            return problem
    if os.path.lexists(submitted / student / ORIGIN):   # the student's submission is nbgrader's layout now
        os.unlink(submitted / student / ORIGIN)
    return ""


def _copy_file(source: Path, submitted: Path, *parts: str) -> str:
    """Copy the regular file ``source`` to ``submitted/<parts>``, never following a link at either end."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        return (f"{shown(source.name)} could not be opened without following a link ({error.strerror}): not "
                "graded. Put the student's own file there (a copy, not a link) and grade again.")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return (f"{shown(source.name)} is not a regular file: not graded. Put the student's notebook there and "
                "grade again.")
    with os.fdopen(fd, "rb") as file:
        return _write(submitted, parts, file.read())


def _write(submitted: Path, parts: tuple[str, ...], data: bytes) -> str:
    """Write ``submitted/<parts>`` through real folders only (replacing, not following, a link at the end)."""
    folder = submitted
    for part in parts[:-1]:
        folder = folder / part
        if os.path.islink(folder) or (os.path.lexists(folder) and not folder.is_dir()):
            return (f"{folder} is a symbolic link or a file, not a folder: nothing was written through it or "
                    "graded. Remove it and grade again.")
        folder.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".incoming-")
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(temporary, 0o644)
    os.replace(temporary, folder / parts[-1])
    return ""


def _read_text(path: Path) -> str | None:
    """The file name recorded in the regular file ``path``; None if there is none (a link is not followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as file:
        return os.fsdecode(file.read())
