"""Time the batch grader on the test corpus: ``python -m bench.grading --workers 1 2 [--sandbox bwrap none]
[--definitions on off] [--pool local dask] [--label NAME]``.

For each worker count, sandbox mode and pool, grades every submission of ``tests/corpus.py`` (or those named
with ``--only``) with ``autograder.grade`` in a scratch course folder and records, in
``bench/records/grading-corpus-w<N>-<sandbox>[-dask][-whole-cells][-<k>of<n>][-<label>].json``: the wall time of the whole
command, its parts (checks, nbgrader autograde + feedback, also per graded student), each submission's check time,
and the versions.
``--pool dask`` grades on a Dask cluster of N workers started for the run on this machine (a scheduler and
``dask worker --nthreads 1`` processes on 127.0.0.1, as the tests start them); its start-up is recorded apart.
``--sandbox none`` measures the grader without the sandbox (what grading cost before it); ``--definitions off``
runs every top-level statement of the answer cells (``Limits.definitions_only``).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import itertools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbgrader
import torch

from autograder.grade import grade
from autograder.boundary.sandbox import Limits

from .run import RECORDS, environment

ROOT = Path(__file__).resolve().parent.parent


def measure(workers: int, limits: Limits, only: list[str] | None = None, pool: str = "local") -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from corpus import CORPUS, write_corpus
    from servers import dask_cluster
    corpus = [s for s in CORPUS if not only or s.name in only]
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        root = Path(scratch)
        shutil.copytree(ROOT / "source", root / "source", ignore=shutil.ignore_patterns(".hypothesis", "__pycache__"))
        shutil.copy(ROOT / "nbgrader_config.py", root)
        write_corpus(root / "incoming", corpus)
        start = time.monotonic()
        scheduler = stack.enter_context(dask_cluster(workers)).address if pool == "dask" else None
        cluster_start_s = round(time.monotonic() - start, 1) if scheduler else None
        log = io.StringIO()
        start = time.monotonic()
        with contextlib.redirect_stdout(log):
            rows = grade(root / "incoming", root=root, workers=workers, limits=limits, feedback=True,
                         scheduler=scheduler)
        total = time.monotonic() - start
    checks_line = next(line for line in log.getvalue().splitlines() if "checks done in" in line)
    checks_s = float(checks_line.split("in")[-1].split()[0])
    nbgrader_s, nbgrader_per_student = _nbgrader_seconds(log.getvalue())
    per_submission = {name: row.seconds for name, row in rows.items() if row.status == "graded"}
    ordinary = sorted(v for k, v in per_submission.items() if not k.startswith(("tamper_endless", "tamper_sigkill")))
    return dict(workers=workers, pool=pool, cluster_start_s=cluster_start_s, sandbox=limits.sandbox,
                definitions_only=limits.definitions_only, submissions=len(corpus),
                of_corpus=len(CORPUS),
                graded=len(per_submission), total_s=round(total, 1),
                checks_s=checks_s, nbgrader_and_exports_s=round(total - checks_s, 1), nbgrader_s=nbgrader_s,
                nbgrader_s_per_student=nbgrader_per_student,
                per_submission_check_s=per_submission, scores={name: row.score for name, row in rows.items()},
                median_check_s_excluding_endless_and_kill=ordinary[len(ordinary) // 2],
                limits=dataclasses.asdict(limits),
                environment=dict(environment(torch.device("cpu")), nbgrader=nbgrader.__version__,
                                 distributed=_version("distributed")))


def _nbgrader_seconds(log: str) -> tuple[float | None, float | None]:
    """nbgrader's steps (autograde, feedback) in seconds, and per student, as the grade command printed them."""
    line = next((line for line in log.splitlines() if "nbgrader done in" in line), None)
    if line is None:
        return None, None
    total, per_student = line.split(" in ", 1)[1].split(" s (")
    return float(total), float(per_student.split()[0])


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per check (the corpus test's 15)")
    parser.add_argument("--sandbox", nargs="+", default=["bwrap"], choices=["bwrap", "none"])
    parser.add_argument("--definitions", nargs="+", default=["on"], choices=["on", "off"],
                        help="run only the answer cells' definitions (on, the default) or whole cells (off)")
    parser.add_argument("--label", help="appended to the record's name (e.g. before/after a change)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="grade only these corpus submissions")
    parser.add_argument("--pool", nargs="+", default=["local"], choices=["local", "dask"],
                        help="local processes, or a Dask cluster of --workers workers started on this machine")
    args = parser.parse_args(argv)
    for sandbox, definitions, workers, pool in itertools.product(args.sandbox, args.definitions, args.workers,
                                                                 args.pool):
        limits = Limits(check_timeout_s=args.timeout, startup_timeout_s=20, memory_mb=2048, sandbox=sandbox,
                        definitions_only=definitions == "on")
        record = measure(workers, limits, args.only, pool)
        part = ("-dask" if pool == "dask" else "") + ("" if limits.definitions_only else "-whole-cells") + \
            (f"-{record['submissions']}of{record['of_corpus']}" if args.only else "") + \
            (f"-{args.label}" if args.label else "")
        path = RECORDS / f"grading-corpus-w{workers}-{sandbox}{part}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"{workers} {pool} worker(s): {record['total_s']} s for {record['submissions']} submissions "
              f"(checks {record['checks_s']} s, nbgrader and the rest {record['nbgrader_and_exports_s']} s, of which "
              f"nbgrader's steps {record['nbgrader_s']} s, {record['nbgrader_s_per_student']} s per student; median "
              f"check time {record['median_check_s_excluding_endless_and_kill']} s per submission) -> {path}")


if __name__ == "__main__":
    main()
