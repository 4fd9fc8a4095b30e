"""Grading workers on this machine, each submission with a wall-clock budget that covers everything done for it.

A submission's time is bounded check by check (``Limits``), but the grader's own work for it (starting its
sandbox, reading and judging the replies) is not a check. So every submission also gets a budget: the most its
checks and start-ups may take, plus a margin. A worker that overruns it is killed with everything it started (its
sandbox dies with it), the submission gets a "not graded" row, a fresh worker takes the next submission, and the
batch goes on.
"""
from __future__ import annotations

import multiprocessing
import time
from multiprocessing.connection import Connection, wait
from typing import Iterator

from autograder.boundary.cgroups import remove_leftovers
from autograder.boundary.cpu_clock import BACKSTOP_SLACK_S
from autograder.boundary.integrity import CodeSnapshot
from autograder.course.jobs import PROCESS_HOSTS, Job, Outcome, grade_job
from autograder.checks.registry import CHECKS
from autograder.checks.training_run import will_run

MARGIN_S = 120.0
FINISH_S = 10.0   # how long a worker told to stop may take to close its sandbox


def budget_s(job: Job) -> float:
    """The wall-clock budget of one submission: ``job.limits.budget_s`` if set, else the sum of its limits' wall-clock
    backstops (``cpu_clock.py``)."""
    limits = job.limits
    if limits.budget_s is not None:
        return limits.budget_s
    per_process = (limits.check_timeout_s + limits.startup_timeout_s) * limits.overload_factor + 2 * BACKSTOP_SLACK_S
    training = job.training.timeout_s + limits.startup_timeout_s if will_run(job.training) else 0.0
    return 2 * limits.boot_timeout_s + len(CHECKS) * per_process + training + MARGIN_S


def _serve(connection: Connection, code: CodeSnapshot) -> None:
    """A worker process: grade each job it is sent, send back the outcome; close its sandbox at the end."""
    try:
        while True:
            job = connection.recv()
            if job is None:
                return
            connection.send(grade_job(job, code))
    finally:
        PROCESS_HOSTS.close()


class _Worker:
    def __init__(self, context, code: CodeSnapshot):
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=_serve, args=(theirs, code), daemon=True)
        self.process.start()
        theirs.close()
        self.job: tuple[int, Job, float] | None = None

    def give(self, index: int, job: Job) -> None:
        self.job = (index, job, time.monotonic())
        self.connection.send(job)

    def stop(self, finished: bool = False) -> None:
        """Stop the worker: ``finished``, told to (it closes its sandbox), else killed at once."""
        if finished:
            self.process.join(timeout=FINISH_S)
        self.process.kill()
        self.process.join()
        self.connection.close()
        remove_leftovers(self.process.pid)


def local_pool(jobs: list[Job], code: CodeSnapshot, workers: int) -> Iterator[Outcome]:
    """Grade the jobs on this machine, ``workers`` at a time; outcomes in submission order."""
    context = multiprocessing.get_context("spawn")
    queue = list(enumerate(jobs))[::-1]
    pool = [_Worker(context, code) for _ in range(min(workers, len(jobs)))]
    done: dict[int, Outcome] = {}
    next_out = 0
    try:
        while next_out < len(jobs):
            for worker in pool:
                if worker.job is None and queue:
                    worker.give(*queue.pop())
            busy = [w for w in pool if w.job is not None]
            soonest = min(start + budget_s(job) for _, job, start in (w.job for w in busy))
            ready = wait([w.connection for w in busy], timeout=max(0.0, soonest - time.monotonic()))
            for index, worker in enumerate(pool):
                if worker.job is None:
                    continue
                position, job, start = worker.job
                if worker.connection in ready:
                    try:
                        done[position] = worker.connection.recv()
                        worker.job = None
                        continue
                    except (EOFError, OSError):
                        why = "its grading process died (out of memory?); grade again"
                elif time.monotonic() < start + budget_s(job):
                    continue
                else:
                    why = (f"grading it took longer than its budget of {budget_s(job):.0f} s (the machine may be "
                           "overloaded); grade again, with fewer --workers")
                done[position] = (job.student, f"not graded: {why}", time.monotonic() - start)
                worker.stop()
                pool[index] = _Worker(context, code)
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
    finally:
        for worker in pool:
            finished = worker.job is None and worker.process.is_alive()
            if finished:
                try:
                    worker.connection.send(None)
                except OSError:
                    finished = False
            worker.stop(finished)
