"""Example submissions made from the course's own files: the release with answer cells filled in."""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat

from autograder.course.nbgrader_commands import COURSE_ROOT

NOTEBOOK = Path("simclr") / "simclr_lab.ipynb"


def solutions(root: Path = COURSE_ROOT) -> dict[str, str]:
    """The source's solution cells without the solution markers: what a correct student writes, by grade_id."""
    answers = {}
    for cell in nbformat.read(str(root / "source" / NOTEBOOK), as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            answers[meta["grade_id"]] = re.sub(r"(?m)^\s*### (BEGIN|END) SOLUTION\n", "", cell.source)
    return answers


def filled_release(answers: dict[str, str], root: Path = COURSE_ROOT) -> dict:
    """The released notebook (as JSON) with the given answer cells' sources replaced."""
    nb = json.loads((root / "release" / NOTEBOOK).read_text())
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers and cell["cell_type"] == "code":
            cell["source"] = answers[grade_id]
    return nb


def with_cell_above(nb: dict, grade_id: str, source: str) -> dict:
    """``nb`` (as JSON) with a new code cell of ``source`` just above the cell ``grade_id``: a student's own cell."""
    index = next(i for i, c in enumerate(nb["cells"]) if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)
    nb["cells"].insert(index, nbformat.v4.new_code_cell(source))
    return nb


ZERO_GRAD_MISSING = '''\
def train_epoch(encoder, head, loader, optimizer, temperature=0.5, device="cpu", progress=True):
    encoder.train()
    head.train()
    losses = []
    for (x_i, x_j), _ in loader:
        loss = nt_xent(head(encoder(x_i.to(device))), head(encoder(x_j.to(device))), temperature)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return sum(losses) / len(losses)
'''


def example_submissions(root: Path = COURSE_ROOT) -> dict[str, str]:
    """Three submissions for the instructor's first run: the solutions, the release untouched, one mistake."""
    correct = solutions(root)
    return {
        "example_solution": json.dumps(filled_release(correct, root), indent=1),
        "example_untouched_release": (root / "release" / NOTEBOOK).read_text(),
        "example_zero_grad_missing": json.dumps(filled_release({**correct, "train_epoch": ZERO_GRAD_MISSING}, root),
                                                indent=1),
    }
