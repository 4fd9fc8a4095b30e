"""Grading a large course: a real PostgreSQL gradebook and a real Dask cluster, started here and stopped after.

One batch of the corpus is graded twice: by the local pool into SQLite, and on a Dask cluster (a scheduler and
two workers, separate processes on 127.0.0.1; one worker is killed while it grades, a fresh one joins) into
PostgreSQL. The two gradebooks, read through nbgrader's Gradebook API, must be equal. Then two grade commands
write to one PostgreSQL gradebook at once, and the commands are pointed at servers that are not there.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

import attacks
from autograder.grade import ASSIGNMENT, NOTEBOOK, grade
from autograder.course.gradebook import database_url
from autograder.course.nbgrader_commands import generate_release
from autograder.boundary.sandbox import Limits
from corpus import CORPUS, ROOT, Submission, write_corpus
from servers import dask_cluster, free_port, postgres_server

LIMITS = Limits(check_timeout_s=5, startup_timeout_s=10, memory_mb=2048, sandbox=attacks.sandbox_mode())
BATCH = ("reference", "loss_no_l2", "corrupt_json")
KILLED = "reference"   # the worker grading this submission is killed mid-task
HANGS = "probe_never_returns"   # graded on the cluster only (two checks reach their limit)
ENDLESS_PROBE = "def linear_probe(encoder, train_loader, test_loader, num_classes=10, epochs=30, lr=1e-3, " \
                "device='cpu', seed=0):\n" \
                "    while True:\n        pass\n"
BY_NAME = {s.name: s for s in CORPUS} | {HANGS: Submission(HANGS, "linear_probe never returns",
                                                           ("test_linear_probe", "test_linear_probe_hidden"),
                                                           cells={"linear_probe": ENDLESS_PROBE})}


def course(tmp: Path, students: tuple[str, ...], prefix: str = "") -> Path:
    """A scratch course folder (the source and config) with these corpus submissions in ``incoming/``."""
    root = tmp / "course"
    shutil.copytree(ROOT / "source", root / "source", ignore=shutil.ignore_patterns(".hypothesis", "__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", root)
    write_corpus(root / "incoming", [BY_NAME[name] for name in students])
    if prefix:
        for path in (root / "incoming").iterdir():
            path.rename(path.with_name(prefix + path.name))
    return root


def gradebook_contents(db_url: str) -> dict:
    """Every grade of the assignment as nbgrader's Gradebook API reads it back: (student, cell) -> scores."""
    with Gradebook(db_url) as gradebook:
        return {(student.id, grade.name): (grade.auto_score, grade.manual_score, grade.max_score,
                                           grade.needs_manual_grade)
                for student in gradebook.students
                for grade in gradebook.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student.id).grades}


def expected_points(name: str) -> float:
    return BY_NAME[name].expected


def code_points(row) -> float:
    return sum(cell["points"] or 0 for cell in row.cells.values())


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as url:
        yield url


def kill_mid_task(cluster, stop: threading.Event, record: dict) -> None:
    """Kill the worker that is running KILLED's checks once it has been at it for 2 s, and start a fresh worker
    like it; record every worker's name by address, and which tasks ran where (the scheduler's task stream)."""
    from distributed import Client

    def executing(dask_worker) -> list[str]:
        return [str(task.key) for task in dask_worker.state.executing]

    with Client(cluster.address, timeout="30s", set_as_default=False) as client:
        client.get_task_stream()   # the scheduler records tasks from here on
        names, seen = record.setdefault("names", {}), {}
        while not stop.wait(0.3):
            names.update({a: w["name"] for a, w in client.scheduler_info()["workers"].items()})
            try:
                running = client.run(executing)
            except OSError:   # a worker that just died
                continue
            for address, keys in running.items():
                if "killed" not in record and any(key.startswith(f"checks-{KILLED}-") for key in keys):
                    since = seen.setdefault(address, time.monotonic())
                    if time.monotonic() - since >= 2:
                        name = names[address]
                        cluster.workers[name].send_signal(signal.SIGKILL)
                        cluster.workers[name].wait()
                        record["killed"] = name
                        cluster.start_worker(f"{name}-fresh", cluster.options[name])
        names.update({a: w["name"] for a, w in client.scheduler_info()["workers"].items()})
        record["tasks"] = [(str(task["key"]), names.get(task["worker"], task["worker"]))
                           for task in client.get_task_stream()]


@pytest.fixture(scope="module")
def both_runs(postgres, tmp_path_factory):
    """The batch graded by the local pool into SQLite, and on the Dask cluster (two workers, the second declaring
    a GPU; one killed mid-task) into PostgreSQL."""
    local_root = course(tmp_path_factory.mktemp("local"), BATCH)
    local = grade(local_root / "incoming", root=local_root, workers=2, limits=LIMITS)
    cluster_root = course(tmp_path_factory.mktemp("cluster"), BATCH + (HANGS,))
    record: dict = {}
    with dask_cluster(2, gpu_workers=1) as cluster:
        stop = threading.Event()
        killer = threading.Thread(target=kill_mid_task, args=(cluster, stop, record), daemon=True)
        killer.start()
        try:
            distributed = grade(cluster_root / "incoming", root=cluster_root, db_url=postgres, limits=LIMITS,
                                scheduler=cluster.address)
        finally:
            stop.set()
            killer.join(60)
        gpu_workers = {name for name, options in cluster.options.items() if "GPU=1" in options}
    return dict(local=local, local_db=f"sqlite:///{local_root / 'gradebook.db'}", distributed=distributed,
                record=record, gpu_workers=gpu_workers, cluster_root=cluster_root)


def test_the_cluster_gives_the_local_pools_scores(both_runs):
    local, distributed = both_runs["local"], both_runs["distributed"]
    assert set(local) == set(BATCH) and set(distributed) == set(BATCH) | {HANGS}
    for name in BATCH:
        if BY_NAME[name].expected_error:
            assert local[name].status == distributed[name].status == "error"
            continue
        assert distributed[name].status == "graded", (name, distributed[name].error)
        assert code_points(local[name]) == code_points(distributed[name]) == expected_points(name), name
        assert {g: c["points"] for g, c in local[name].cells.items()} == \
            {g: c["points"] for g, c in distributed[name].cells.items()}, name


def test_grades_read_back_from_postgres_equal_the_sqlite_run(both_runs, postgres):
    sqlite = gradebook_contents(both_runs["local_db"])
    postgresql = gradebook_contents(database_url(postgres, ROOT))
    graded = {name for name in BATCH if not BY_NAME[name].expected_error}
    assert {student for student, _ in postgresql} == graded | {HANGS}
    assert len(sqlite) == len(graded) * len({name for _, name in sqlite}) > 0
    assert {key: value for key, value in postgresql.items() if key[0] != HANGS} == sqlite


def test_a_worker_killed_mid_batch_loses_no_submission(both_runs):
    killed = both_runs["record"].get("killed")
    assert killed in ("w0", "w1"), "no worker was killed while it graded: the test did not happen"
    row = both_runs["distributed"][KILLED]
    assert row.status == "graded" and code_points(row) == expected_points(KILLED), (row.error, row.cells)


def test_training_runs_go_to_gpu_workers_only(both_runs):
    tasks = both_runs["record"]["tasks"]
    graded = {name for name in BATCH if not BY_NAME[name].expected_error} | {HANGS}
    runs = {key[len("training-run-"):].rsplit("-", 1)[0]: worker
            for key, worker in tasks if key.startswith("training-run-")}
    assert set(runs) == graded, tasks
    assert set(runs.values()) <= both_runs["gpu_workers"], f"a training run went to a worker without a GPU: {runs}"
    checked_on = {worker for key, worker in tasks if key.startswith("checks-")}
    assert checked_on - both_runs["gpu_workers"], "no checks ran on the worker without a GPU"


def test_a_hanging_submission_costs_only_its_limits(both_runs):
    row = both_runs["distributed"][HANGS]
    assert row.status == "graded" and code_points(row) == expected_points(HANGS)
    assert {g for g, c in row.cells.items() if (c["points"] or 0) < c["max"]} == set(BY_NAME[HANGS].fails)
    # each hanging check used its limit, in the student's CPU time where the sandbox counts it (not a wall-clock
    # bound: a busy machine would fail that), and said so
    results = json.loads((both_runs["cluster_root"] / "grades" / "checks" / f"{HANGS}.json").read_text())["results"]
    for grade_id in ("test_linear_probe", "test_linear_probe_hidden"):
        used = results[grade_id]["cpu_seconds"] or results[grade_id]["seconds"]
        assert "time limit" in results[grade_id]["message"] and used < LIMITS.check_timeout_s + 2, results[grade_id]


def _grade_command(root: Path, db_url: str, *options: str) -> list[str]:
    sandbox = ["--unsafe-no-sandbox"] if LIMITS.sandbox == "none" else []
    return [sys.executable, "-m", "autograder.grade", str(root / "incoming"), "--root", str(root), "--db", db_url,
            "--workers", "1", "--timeout", str(LIMITS.check_timeout_s), "--memory-mb", str(LIMITS.memory_mb),
            *sandbox, *options]


def test_two_grade_commands_at_once_lose_no_grade(postgres, tmp_path):
    import psycopg
    with psycopg.connect(postgres, autocommit=True) as connection:
        connection.execute("CREATE DATABASE two_graders")
    db_url = postgres.rsplit("/", 1)[0] + "/two_graders"
    batches = {"a_": ("unchanged_release", "loss_one_direction"), "b_": ("loss_mean_over_n", "loss_tau_multiplied")}
    roots = {prefix: course(tmp_path / prefix, students, prefix) for prefix, students in batches.items()}
    # the course is set up once (its first grade command does it); then two graders work at once
    generate_release(ASSIGNMENT, roots["a_"], extra=[f"--CourseDirectory.db_url={database_url(db_url, ROOT)}"])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    commands = [subprocess.Popen(_grade_command(root, db_url), cwd=root, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for root in roots.values()]
    outputs = [command.communicate(timeout=600)[0] for command in commands]
    assert [command.returncode for command in commands] == [0, 0], "\n\n".join(outputs)
    contents = gradebook_contents(database_url(db_url, ROOT))
    students = {prefix + name for prefix, names in batches.items() for name in names}
    assert {student for student, _ in contents} == students
    for student in students:
        points = sum(auto or 0 for (who, name), (auto, _manual, _max, _pending) in contents.items()
                     if who == student and name.startswith("test_"))
        assert points == expected_points(student[2:]), (student, points)


def test_an_unreachable_gradebook_server_is_named_before_anything_is_graded(tmp_path):
    root = course(tmp_path, ("reference",))
    url = f"postgresql://grader:secret@127.0.0.1:{free_port()}/course"   # nothing listens there
    with pytest.raises(SystemExit) as stopped:
        grade(root / "incoming", root=root, db_url=url, limits=LIMITS)
    message = str(stopped.value)
    assert "cannot open the gradebook postgresql+psycopg://grader:***@127.0.0.1" in message, message
    assert "No submission was graded" in message and "secret" not in message
    assert not (root / "submitted").exists() and not (root / "grades").exists(), "something was graded"


def test_an_unreachable_scheduler_is_named_before_anything_is_graded(tmp_path):
    root = course(tmp_path, ("reference",))
    start = time.monotonic()
    with pytest.raises(SystemExit) as stopped:
        grade(root / "incoming", root=root, limits=LIMITS, scheduler=f"tcp://127.0.0.1:{free_port()}")
    message = str(stopped.value)
    assert "cannot reach a Dask scheduler at tcp://127.0.0.1" in message and "No submission was graded" in message
    assert not (root / "submitted").exists() and not (root / "grades").exists(), "something was graded"
    assert time.monotonic() - start < 30, "a refused connection is reported at once, not after the client's retries"
