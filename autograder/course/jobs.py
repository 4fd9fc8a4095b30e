"""What a grading worker runs for one submission: a process of the local pool, or a Dask worker.

A :class:`Job` carries the answer cells (read on the grading machine, so a worker needs no copy of the
notebooks) and the limits. A worker first checks that its own grader files are the batch's
(``CodeSnapshot``), grades, and checks them again after; anything that stops grading for a reason that is not
the student's comes back as a "not graded: ..." line instead of a result.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from autograder.boundary import isolation
from autograder.checks.grading import Hosts, digest, grade_cells, grade_training_run
from autograder.boundary.integrity import CodeSnapshot, GraderTampered, verify_unchanged
from autograder.checks.registry import TRAINING_RUN_ID
from autograder.boundary.sandbox import GraderError, Limits
from autograder.checks.training_run import TrainingRunSettings, data_problem

Outcome = tuple[str, "dict | str", float]   # (student, {"digest", "results"} or "not graded: why", seconds)


@dataclass(frozen=True)
class Job:
    """One submission to grade: whose, its answer cells (component, source) in notebook order, and how."""
    student: str
    cells: tuple[tuple[str, str], ...]
    limits: Limits
    training: TrainingRunSettings


def _same_grader(code: CodeSnapshot) -> None:
    """Raise unless this machine's grader files are the batch's (a worker with another commit would grade
    differently)."""
    changed = code.changed_on_disk()
    if changed:
        raise GraderTampered("this machine's grader files differ from the ones the batch started with: "
                             f"{', '.join(changed[:8])}. Install the grading machine's commit on every worker "
                             "(pip install -e . in the same checkout) and grade again.")


PROCESS_HOSTS = Hosts()   # this worker's sandbox, kept from one job to the next (closed by the local pool's worker)


def grade_job(job: Job, code: CodeSnapshot, with_training_run: bool = True) -> Outcome:
    """Every check of ``job`` (and its training run unless ``with_training_run`` is False), in this worker's
    sandbox (``PROCESS_HOSTS``)."""
    start = time.monotonic()
    torch.set_num_threads(1)   # the grader's own arithmetic is small; submissions are what runs in parallel
    try:
        _same_grader(code)
        if with_training_run and data_problem(job.training):
            raise GraderError(f"on this machine {data_problem(job.training)}")
        cells = [tuple(cell) for cell in job.cells]
        results = grade_cells(cells, job.limits, job.training if with_training_run else None, code, PROCESS_HOSTS)
        verify_unchanged(code)
        outcome = {"digest": digest(cells), "results": {k: asdict(v) for k, v in results.items()}}
    except (GraderError, GraderTampered, isolation.SandboxUnavailable) as error:
        outcome = f"not graded: {error}"
    return job.student, outcome, time.monotonic() - start


def train_job(job: Job, code: CodeSnapshot, checked: Outcome) -> Outcome:
    """The training run of ``job``, added to the results ``checked`` of its checks (``grade_job`` without it)."""
    student, outcome, seconds = checked
    if isinstance(outcome, str):
        return checked
    start = time.monotonic()
    try:
        _same_grader(code)
        if data_problem(job.training):
            raise GraderError(f"on this machine {data_problem(job.training)}")
        run = grade_training_run([tuple(c) for c in job.cells], job.limits, job.training, outcome["results"], code)
        verify_unchanged(code)
    except (GraderError, GraderTampered, isolation.SandboxUnavailable) as error:
        return student, f"not graded: {error}", seconds + time.monotonic() - start
    results = {**outcome["results"], TRAINING_RUN_ID: asdict(run)}
    return student, {**outcome, "results": results}, seconds + time.monotonic() - start
