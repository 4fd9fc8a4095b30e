"""Grading fanned out on a Dask ``distributed`` cluster: ``python -m autograder.grade --scheduler tcp://HOST:8786``.

The grading machine keeps the gradebook and nbgrader's steps (autograde, feedback, export). Each submission's
checks go to the cluster as one task (``jobs.grade_job``: the answer cells travel with it, the notebook does
not); when the course's training run wants a GPU and a worker declares one, the run is a second task that only
workers with a ``GPU`` resource take (``jobs.train_job``). A worker runs the same sandboxed student processes
as the local pool. When a worker dies, the scheduler gives its tasks to another worker (up to
``distributed.scheduler.allowed-failures`` times, 3 by default); a submission that outlives that many workers
is reported "not graded", and the batch goes on.

Every worker needs this repository at the grading machine's commit (``pip install -e '.[dask]'``; a worker
with other grader files is refused), Linux with bubblewrap, and for the training run CIFAR-10 (``CIFAR10_DIR``).
One task at a time per worker process (``--nthreads 1``; ``--nworkers`` for more):

    dask scheduler --port 8786                                                # a machine every worker reaches
    dask worker tcp://HOST:8786 --nworkers 8 --nthreads 1                     # a CPU machine: checks
    dask worker tcp://HOST:8786 --nworkers 1 --nthreads 1 --resources GPU=1   # per GPU: training runs
"""
from __future__ import annotations

import socket
import uuid
from typing import Iterator

from autograder.boundary.integrity import CodeSnapshot
from autograder.course.jobs import Job, Outcome, grade_job, train_job
from autograder.checks.training_run import TrainingRunSettings

WAIT_FOR_WORKERS_S = 60.0
CONNECT_TIMEOUT_S = 10.0
HOW_TO_START = ("start one with `dask scheduler --port 8786` and workers with `dask worker tcp://HOST:8786 "
                "--nthreads 1` (see autograder/course/dask_grading.py), or leave out --scheduler to grade on this machine")


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S):
    """A ``distributed.Client`` of the scheduler at ``address``; SystemExit with what to do if there is none."""
    try:
        from distributed import Client
    except ImportError:
        raise SystemExit("--scheduler needs Dask's distributed package: pip install -e '.[dask]'") from None
    try:
        _reachable(address, timeout_s)
        return Client(address, timeout=f"{timeout_s}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise SystemExit(f"cannot reach a Dask scheduler at {address} ({type(error).__name__}: {error}); "
                         f"{HOW_TO_START}. No submission was graded.") from None


def _reachable(address: str, timeout_s: float) -> None:
    """Raise OSError at once if nothing listens at a ``tcp://HOST:PORT`` address (the client would retry until
    its timeout); other protocols are left to the client."""
    scheme, _, location = address.partition("://")
    if scheme == "tcp" and ":" in location:
        host, port = location.rsplit(":", 1)
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass


def grader_digest() -> str:
    """Run on each worker: the digest of its installed grader files."""
    return CodeSnapshot.read().digest()


def gpu_workers(client, code: CodeSnapshot, wait_s: float = WAIT_FOR_WORKERS_S) -> list[str]:
    """Check the cluster before anything is sent: a worker at least, one thread each, the batch's grader files.
    Returns the addresses of the workers that declare a ``GPU`` resource."""
    try:
        client.wait_for_workers(1, timeout=wait_s)
    except TimeoutError:
        raise SystemExit(f"no Dask worker joined the scheduler within {wait_s:.0f} s; {HOW_TO_START}. "
                         "No submission was graded.") from None
    workers = client.scheduler_info()["workers"]
    threaded = sorted(address for address, info in workers.items() if info.get("nthreads") != 1)
    if threaded:
        raise SystemExit(f"these Dask workers run several tasks at once in one process: {', '.join(threaded)}. "
                         "Start every worker with --nthreads 1 (--nworkers N for N at a time): a submission's checks "
                         "must not share a process with another's. No submission was graded.")
    digests = client.run(grader_digest)
    others = sorted(address for address, digest in digests.items() if digest != code.digest())
    if others:
        raise SystemExit(f"these Dask workers have other grader files than this machine: {', '.join(others)}. "
                         "Install this machine's commit on them (git checkout, pip install -e '.[dask]') and restart "
                         "them. No submission was graded.")
    return sorted(address for address, info in workers.items() if info.get("resources", {}).get("GPU"))


def _wants_gpu(training: TrainingRunSettings) -> bool:
    return training.device != "cpu"


class ClusterGrader:
    """The connection to a checked cluster (``connect`` and ``gpu_workers`` run when it is made, so every problem
    with the cluster shows before anything is graded); ``grade`` sends a batch."""

    def __init__(self, address: str, code: CodeSnapshot):
        self.address, self.code = address, code
        self.client = connect(address)
        try:
            self.gpus = gpu_workers(self.client, code)
        except BaseException:
            self.client.close()
            raise

    def __enter__(self) -> "ClusterGrader":
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()

    def grade(self, jobs: list[Job]) -> Iterator[Outcome]:
        """Grade the jobs on the cluster; outcomes in the order they finish."""
        if not jobs:
            return
        client = self.client
        wants_gpu = _wants_gpu(jobs[0].training)
        apart = wants_gpu and bool(self.gpus)
        if wants_gpu and not self.gpus:
            print("   no worker declares a GPU resource (--resources GPU=1): the training run is graded as on a "
                  "machine without one (c.TrainingRun.without_device)", flush=True)
        shared_code = client.scatter(self.code, broadcast=True)
        batch = uuid.uuid4().hex[:8]
        students = {}
        for job in jobs:
            checked = client.submit(grade_job, job, shared_code, not apart, key=f"checks-{job.student}-{batch}")
            final = client.submit(train_job, job, shared_code, checked, resources={"GPU": 1},
                                  key=f"training-run-{job.student}-{batch}") if apart else checked
            students[final] = job.student
        from distributed import as_completed
        for future in as_completed(students, loop=client.loop):
            try:
                yield future.result()
            except Exception as error:  # noqa: BLE001 - the cluster's failure, never the student's: the batch goes on
                yield (students[future], f"not graded: the Dask cluster lost this submission's task "
                       f"({type(error).__name__}: {str(error)[:300]}); grade it again", 0.0)
