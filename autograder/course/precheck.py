"""Read a submitted notebook before grading: refuse what is not this assignment's notebook or what would make
``nbgrader autograde`` fail for that student, saying what is wrong and what to do.

nbgrader 0.9.6 fails for one student on a notebook with two cells of the same grade_id (a copied cell keeps the
original's metadata), with nbgrader metadata whose grade_id the gradebook does not know (an extra test cell), or
with a test cell deleted together with the cell above it; it stops the whole batch on metadata of another schema
version. Its gradebook keeps what an earlier batch wrote for that student, so the precheck catches these first.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder.checks.grading import answer_cells
from autograder.checks.registry import CHECKS
from autograder.course.submissions import ASSIGNMENT, NOTEBOOK

FRESH_COPY = "The student should copy the answers into a fresh copy of the released notebook and submit again."


@dataclass(frozen=True)
class AssignmentCells:
    """The notebook's nbgrader cells as the gradebook knows them, in the order nbgrader's OverwriteCells reads."""
    source: tuple[str, ...]   # every cell with nbgrader metadata
    graded: tuple[str, ...]   # the graded ones (test cells, written answers)

    @classmethod
    def from_gradebook(cls, db_url: str) -> AssignmentCells:
        """The cells of this assignment's notebook in the gradebook at ``db_url``."""
        from nbgrader.api import Gradebook
        with Gradebook(db_url) as gradebook:
            notebook = gradebook.find_notebook(NOTEBOOK, ASSIGNMENT)
            return cls(tuple(c.name for c in notebook.source_cells), tuple(c.name for c in notebook.grade_cells))


def precheck(path: Path, cells: AssignmentCells) -> str:
    """Empty if the file is a notebook of this assignment that nbgrader can grade; otherwise what is wrong and
    what to do."""
    if not path.is_file():
        names = ", ".join(p.name for p in path.parent.glob("*.ipynb")) or "no notebook"
        return f"no {path.name} in the submission (found: {names}); submit the assignment's notebook under its own name"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nbformat's notes on old formats (missing cell ids) are not errors
            nb = nbformat.read(str(path), as_version=4)
            nbformat.validate(nb)
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported, the batch goes on
        return (f"not a readable notebook ({type(error).__name__}: {str(error)[:200]}); "
                "the student should re-download it from Jupyter (File > Download) and submit again")
    not_a_dictionary = next((number for number, cell in enumerate(nb.cells, 1)
                             if not isinstance(cell.metadata.get("nbgrader", {}), dict)), None)
    if not_a_dictionary:
        return (f"{_where(not_a_dictionary, nb.cells[not_a_dictionary - 1])} has nbgrader metadata that is not a "
                f"dictionary, and nbgrader fails on it: not graded. {FRESH_COPY}")
    grade_ids = {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells}
    if not answer_cells(nb) and not grade_ids & {check.grade_id for check in CHECKS}:
        return "a notebook of another assignment: none of simclr_lab's cells or functions is in it"
    return nbgrader_problem(nb, cells)


def nbgrader_problem(nb: nbformat.NotebookNode, cells: AssignmentCells) -> str:
    """What in the cells' nbgrader metadata makes nbgrader autograde fail (empty if nothing), as nbgrader's
    sanitizing steps (DeduplicateIds, OverwriteCells, CheckCellMetadata) would meet it."""
    from nbgrader.nbgraderformat import MetadataValidator
    validator = MetadataValidator()
    seen: dict[str, str] = {}
    present = set()
    for number, cell in enumerate(nb.cells, 1):
        if "nbgrader" not in cell.get("metadata", {}):
            continue
        meta, where = cell.metadata.nbgrader, _where(number, cell)
        try:
            validator.validate_cell(cell)
        except Exception as error:  # noqa: BLE001 - jsonschema's, nbgrader's own and schema-version errors alike
            reason = getattr(error, "message", None) or str(error)
            return (f"{where} has nbgrader metadata that nbgrader cannot read ({reason.splitlines()[0][:200]}), and "
                    f"nbgrader fails on it: not graded. {FRESH_COPY}")
        grade_id = meta.get("grade_id")
        if grade_id not in cells.source:
            named = f"grade_id '{grade_id}', which is" if grade_id else "no grade_id, so it is"
            return (f"{where} has nbgrader metadata with {named} no cell of this assignment "
                    "(a cell copied from elsewhere, or an extra test cell), and nbgrader fails on it: not graded. The "
                    f"student should delete that cell (or its nbgrader metadata) and submit again.")
        if grade_id in seen:
            return (f"{seen[grade_id]} and {where} both have nbgrader's grade_id '{grade_id}' (a copied cell keeps "
                    "the original's metadata), and nbgrader fails on such a notebook: not graded. The student should "
                    "delete the copied cell (keeping any answer in the other) and submit again.")
        seen[grade_id] = where
        if meta.get("grade") or meta.get("solution"):
            present.add(grade_id)
    return _unrestorable(present, cells)


def _unrestorable(present: set[str], cells: AssignmentCells) -> str:
    """nbgrader (OverwriteCells.add_missing_cells) puts a deleted graded cell back after the cell above it in the
    source, which must be in the notebook or put back before it; otherwise it fails (a KeyError)."""
    for grade_id in cells.graded:
        if grade_id in present:
            continue
        index = cells.source.index(grade_id)
        if index > 0 and cells.source[index - 1] not in present:
            return (f"the cell '{cells.source[index - 1]}' and the graded cell '{grade_id}' below it were deleted; "
                    "nbgrader cannot put back a graded cell whose cell above is gone too, and fails on this notebook: "
                    "not graded. The student should copy both cells back from the released notebook (an exercise may "
                    "stay unanswered) and submit again.")
        present.add(grade_id)
    return ""


def _where(number: int, cell: nbformat.NotebookNode) -> str:
    first = next((line.strip() for line in str(cell.get("source", "")).splitlines() if line.strip()), "empty")
    return f"cell {number} ({first[:40]!r})"
