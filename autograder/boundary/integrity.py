"""The grader's own code, read once per batch: copies for the student processes and a check that nothing changed.

A batch takes a :class:`CodeSnapshot` of ``autograder/``, ``reference/`` and ``simclr_helpers/`` before it
grades. Every student process gets its helpers written from that snapshot (not from the disk), and before
nbgrader writes a single grade the batch compares the disk with the snapshot again: a file that changed while
student code ran stops the batch.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import simclr_helpers

PACKAGES = {
    "autograder": Path(__file__).resolve().parents[1],
    "reference": Path(__file__).resolve().parents[2] / "reference",
    "simclr_helpers": Path(simclr_helpers.__file__).resolve().parent,
}
WORKER = "autograder/boundary/worker.py"


class GraderTampered(RuntimeError):
    """The grader's files changed during a batch; no grade of that batch may be written."""


def _read(packages: dict[str, Path]) -> dict[str, bytes]:
    files = {}
    for name, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" not in path.parts:
                files[f"{name}/{path.relative_to(folder).as_posix()}"] = path.read_bytes()
    return files


@dataclass(frozen=True)
class CodeSnapshot:
    """The grader's Python files (``package/relative/path.py`` -> bytes) as read at one moment."""
    files: dict[str, bytes]

    @classmethod
    def read(cls) -> "CodeSnapshot":
        return cls(_read(PACKAGES))

    def hashes(self) -> dict[str, str]:
        return {name: hashlib.sha256(data).hexdigest() for name, data in self.files.items()}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.hashes(), sort_keys=True).encode()).hexdigest()

    def changed_on_disk(self) -> list[str]:
        """Files that differ between the disk now and this snapshot (changed, added or removed)."""
        now = CodeSnapshot.read().hashes()
        before = self.hashes()
        return sorted(name for name in before.keys() | now.keys() if before.get(name) != now.get(name))

    def write_student_code(self, folder: Path) -> None:
        """The student process's code folder: the worker and the helpers, from the snapshot, verified."""
        wanted = {WORKER: "worker.py"}
        wanted.update({name: name for name in self.files if name.startswith("simclr_helpers/")})
        for source, target in wanted.items():
            path = folder / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self.files[source])
            if path.read_bytes() != self.files[source]:
                raise GraderTampered(f"the copy of {source} in {folder} does not match the grader's")


@functools.lru_cache(maxsize=1)
def grader_code() -> CodeSnapshot:
    """This process's snapshot, read on first use."""
    return CodeSnapshot.read()


def verify_unchanged(snapshot: CodeSnapshot) -> None:
    """Raise GraderTampered if any of the grader's files changed since ``snapshot`` was taken."""
    changed = snapshot.changed_on_disk()
    if changed:
        raise GraderTampered("the grader's own files changed while the batch ran: " + ", ".join(changed) +
                             ". No grade of this batch was written. Restore them (git checkout -- autograder "
                             "reference source/simclr/simclr_helpers), find out what changed them, and grade again.")
