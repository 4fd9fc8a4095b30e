"""The student process: answer cells taken from a notebook, limits, crashes, and the data-only boundary."""
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import attacks
import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder.boundary import cgroups
from autograder.course import examples
from autograder.boundary import isolation
from autograder.checks.grading import Hosts, answer_cells, grade_cells, grade_training_run
from autograder.boundary.sandbox import GraderError, Limits, Sandbox, SandboxHost
from autograder.checks.training_run import TrainingRunSettings
from simclr_helpers.checks import StudentCodeError

ROOT = Path(__file__).resolve().parent.parent
LOSS = "def nt_xent(z_i, z_j, temperature=0.5):\n    return (z_i * z_j).sum() * 0 + 1.0\n"
FAST = Limits(check_timeout_s=5, startup_timeout_s=20, memory_mb=1024)
TRAINING = Limits(check_timeout_s=30, startup_timeout_s=30, memory_mb=4096)


_SHARED: dict[Limits, SandboxHost] = {}


def shared(limits: Limits) -> SandboxHost:
    """The module's sandbox for these sandbox-wide limits, kept from test to test as a grading worker keeps one
    from submission to submission: each test's checks must start clean of what earlier ones left (the tests that
    attack the sandbox itself make their own)."""
    key = dataclasses.replace(limits, check_timeout_s=0, startup_timeout_s=0, overload_factor=0)
    if key not in _SHARED:
        _SHARED[key] = SandboxHost(key)
    return _SHARED[key]


@pytest.fixture(scope="module", autouse=True)
def _close_shared_sandboxes():
    yield
    for host in _SHARED.values():
        host.close()
    _SHARED.clear()


def _nt_xent(sandbox):
    return sandbox.run("nt_xent", z_i=torch.ones(2, 3), z_j=torch.ones(2, 3), temperature=0.5)["loss"]


def test_answer_cells_by_grade_id_else_by_definition_without_magics():
    tagged = new_code_cell("def nt_xent(z_i, z_j, t):\n    return 1", metadata={"nbgrader": {"grade_id": "nt_xent"}})
    untagged = new_code_cell("%matplotlib inline\nclass ProjectionHead:\n    pass")
    test_cell = new_code_cell("def train_epoch(): pass", metadata={"nbgrader": {"grade": True, "grade_id": "x"}})
    nb = new_notebook(cells=[new_markdown_cell("# lab"), untagged, tagged, test_cell])
    cells = answer_cells(nb)
    assert [label for label, _ in cells] == ["ProjectionHead", "nt_xent"]
    assert "%matplotlib" not in cells[0][1]


def test_answer_cells_take_what_they_use_from_the_students_other_cells():
    """Helpers come first, from other code cells (not test cells), only the statements an answer cell needs, at their
    own line numbers; the last definition of a name wins, but never over an answer cell's own definitions."""
    helper = new_code_cell("SCALE = 2.0\nprint('not needed')\n\ndef positive_targets(n):\n    return torch.arange(n) * SCALE\n"
                           "unused = 3\n")
    answer = new_code_cell("def nt_xent(z_i, z_j, t=0.5):\n    return positive_targets(len(z_i)).sum() + OFFSET",
                           metadata={"nbgrader": {"grade_id": "nt_xent"}})
    test_cell = new_code_cell("OFFSET = 100", metadata={"nbgrader": {"grade": True, "grade_id": "test_nt_xent"}})
    later = new_code_cell("def nt_xent(a, b, t=0.5):\n    return 0\nSCALE = 3.0\nOFFSET = 1\n")
    cells = answer_cells(new_notebook(cells=[helper, answer, test_cell, later]))
    assert [label for label, _ in cells] == ["cell 1 (`positive_targets`)", "cell 4 (`SCALE`)", "nt_xent"]
    assert cells[0][1].splitlines() == ["", "", "", "def positive_targets(n):", "    return torch.arange(n) * SCALE"]
    assert cells[1][1].splitlines() == ["", "", "SCALE = 3.0", "OFFSET = 1"]
    assert cells[2][1] == answer.source


def test_a_correct_loss_with_its_helper_in_the_cell_above_gets_full_marks():
    """Through the real grading path: the answer cells of the saved notebook, every check in the sandbox."""
    from autograder.course.variants import LOSS_WITH_HELPER, POSITIVE_TARGETS
    nb = examples.with_cell_above(examples.filled_release({**examples.solutions(), "nt_xent": LOSS_WITH_HELPER}),
                                  "nt_xent", POSITIVE_TARGETS)
    cells = answer_cells(nbformat.reads(json.dumps(nb), as_version=4))
    assert cells[0][0].endswith("(`positive_targets`)")
    results = grade_cells(cells, TRAINING, TrainingRunSettings(device="cuda-that-is-not-here",
                                                              without_device="follow_checks"))
    assert all(result.passed for result in results.values()), {g: r.message for g, r in results.items() if not r.passed}


def test_ops_return_plain_tensors_from_a_separate_process():
    with Sandbox([("nt_xent", LOSS)], FAST, host=shared(FAST)) as sandbox:
        loss = _nt_xent(sandbox)
    assert type(loss) is torch.Tensor and loss.item() == 1.0


def test_a_result_that_is_not_plain_data_is_refused_in_the_student_process():
    # unittest.mock.ANY equals everything: it cannot even be sent.
    loss = "from unittest.mock import ANY\n\ndef nt_xent(z_i, z_j, temperature=0.5):\n    return ANY\n"
    with Sandbox([("nt_xent", loss)], FAST, host=shared(FAST)) as sandbox:
        with pytest.raises(StudentCodeError, match="must be a torch.Tensor"):
            _nt_xent(sandbox)


@pytest.mark.parametrize("name", list(attacks.CRAFTED_REPLIES))
def test_a_crafted_reply_is_refused_before_the_grader_computes_anything(name):
    # Written straight onto the socket, past everything of the student process's own: only the grader's reading of
    # the bytes stands between them and the verdict (and its memory and time).
    limits = dataclasses.replace(FAST, check_timeout_s=3, overload_factor=2)
    with Sandbox([("nt_xent", attacks.crafted_reply(attacks.CRAFTED_REPLIES[name]))], limits, host=shared(limits)) as sandbox:
        with pytest.raises(StudentCodeError, match="not plain data|time limit") as raised:
            _nt_xent(sandbox)
    if name == "a message that never ends":
        assert "time limit" in str(raised.value)
    else:
        assert "not plain data" in str(raised.value), raised.value


def test_a_hanging_function_costs_one_time_limit_then_fails_at_once():
    with Sandbox([("nt_xent", "def nt_xent(*a):\n    while True: pass\n")], FAST, host=shared(FAST)) as sandbox:
        sandbox.ensure_started()
        start = time.monotonic()
        sandbox.start_check(2)
        with pytest.raises(StudentCodeError, match="time limit"):
            _nt_xent(sandbox)
        assert 1.5 < time.monotonic() - start < 10
        with pytest.raises(StudentCodeError, match="already used its time"):
            _nt_xent(sandbox)


def test_a_hanging_cell_is_left_out_and_the_others_still_run():
    # A loop at the top level is not run at all (only definitions are); a constant that takes minutes to compute is.
    cells = [("get_augmentations", "while True:\n    pass\nX = 10 ** 10 ** 8\n"), ("nt_xent", LOSS)]
    limits = dataclasses.replace(FAST, startup_timeout_s=3)
    with Sandbox(cells, limits, host=shared(limits)) as sandbox:
        assert _nt_xent(sandbox).item() == 1.0
        assert "time limit" in sandbox.cell_errors["get_augmentations"]


@pytest.mark.parametrize("body, reason", [
    ("import os\n    os._exit(3)", "exited with code 3"),
    ("import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)", "killed by signal 9"),
    ("import sys\n    sys.exit(0)", "raised SystemExit"),
    ("return torch.ones(2**31)", "raised RuntimeError"),
])
def test_exits_kills_and_memory_bombs_are_reported_and_the_process_restarts(body, reason):
    with Sandbox([("nt_xent", f"def nt_xent(*a):\n    {body}\n")], FAST, host=shared(FAST)) as sandbox:
        for _ in range(2):  # the second call runs in a fresh process and fails the same way
            with pytest.raises(StudentCodeError, match=reason):
                _nt_xent(sandbox)


def test_the_course_packages_are_not_importable_in_the_student_process():
    probe = ("def nt_xent(*a):\n    import importlib.util\n"
             "    found = [m for m in ('reference', 'autograder') if importlib.util.find_spec(m)]\n"
             "    return torch.tensor(float(len(found)))\n")
    with Sandbox([("nt_xent", probe)], FAST, host=shared(FAST)) as sandbox:
        assert _nt_xent(sandbox).item() == 0.0


def test_training_run_mechanism_on_a_cpu_budget(cifar_dir):
    from autograder.checks.registry import COMPONENTS
    solutions = examples.solutions()
    cells = [(name, solutions[name]) for name in COMPONENTS]
    tiny = dict(preset="grading", overrides={"epochs": 1, "pretrain_fraction": 0.01}, device="cpu",
                without_device="run_anyway", timeout_s=300)
    results = grade_cells(cells, TRAINING, TrainingRunSettings(**tiny, min_probe_accuracy=0.15))
    run = results["test_training_run_hidden"]
    assert run.passed and "linear probe" in run.message, run.message
    checks = {grade_id: dataclasses.asdict(result) for grade_id, result in results.items()}
    strict = grade_training_run(cells, TRAINING, TrainingRunSettings(**tiny, min_probe_accuracy=0.99), checks)
    assert not strict.passed and "below the pass mark" in strict.message


def test_without_the_device_the_run_follows_the_component_checks():
    from corpus import BROKEN
    from autograder.checks.registry import COMPONENTS
    settings = TrainingRunSettings(device="cuda-that-is-not-here", without_device="follow_checks")
    solutions, hosts = examples.solutions(), Hosts()
    with contextlib.closing(hosts):
        good = grade_cells([(n, solutions[n]) for n in COMPONENTS], TRAINING, settings, hosts=hosts)
        broken = {**solutions, "nt_xent": BROKEN["loss_no_l2"][1]}
        bad = grade_cells([(n, broken[n]) for n in COMPONENTS], TRAINING, settings, hosts=hosts)
    good, bad = good["test_training_run_hidden"], bad["test_training_run_hidden"]
    assert good.passed and "not run" in good.message
    assert not bad.passed and "not run" in bad.message


def test_a_training_run_without_data_stops_before_grading(monkeypatch, tmp_path):
    from autograder.checks.training_run import preflight
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit, match="needs CIFAR-10"):
        preflight(TrainingRunSettings(device="cpu"))
    preflight(TrainingRunSettings(device="cuda-that-is-not-here"))  # not run here: no data needed


# --- the grading sandbox: each test fails when isolation is off (SANDBOX_UNDER_TEST=none) -------------------

ISOLATED = dataclasses.replace(FAST, sandbox=attacks.sandbox_mode())


def _within(seconds: float, condition) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


def test_a_daemon_that_double_forks_and_setsids_dies_with_the_student_process():
    cells = [("nt_xent", LOSS + attacks.DAEMON + attacks.at_first_call("nt_xent", "_start_daemon()"))]
    try:
        with Sandbox(cells, ISOLATED) as sandbox:
            assert _nt_xent(sandbox).item() == 1.0
            assert _within(10, lambda: attacks.processes_with(attacks.DAEMON_TOKEN)), "the daemon never started"
        assert _within(5, lambda: not attacks.processes_with(attacks.DAEMON_TOKEN)), "the daemon outlived grading"
    finally:
        for pid in attacks.processes_with(attacks.DAEMON_TOKEN):
            os.kill(pid, signal.SIGKILL)


def test_a_search_of_the_whole_disk_finds_no_part_of_the_course():
    limits = dataclasses.replace(ISOLATED, check_timeout_s=60)
    with Sandbox([("nt_xent", attacks.SEARCH_DISK)], limits, host=shared(limits)) as sandbox:
        assert _nt_xent(sandbox).item() == 0.0


def test_no_network_reaches_a_listener_of_the_grading_machine():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with Sandbox([("nt_xent", attacks.connect_to(port))], ISOLATED, host=shared(ISOLATED)) as sandbox:
            assert _nt_xent(sandbox).item() == 0.0


def test_writing_outside_the_private_scratch_folder_fails(tmp_path):
    host_tmp = tempfile.mkdtemp(prefix="simclr-attack-")
    targets = [str(ROOT / "autograder" / "planted.py"), str(tmp_path / "planted"), f"{host_tmp}/planted",
               "/sandbox/planted", "/sandbox/simclr_helpers/checks.py", "/planted"]
    scratch = [f"{isolation.SCRATCH}/scratch-only"]
    try:
        with Sandbox([("nt_xent", attacks.write_to(targets))], ISOLATED, host=shared(ISOLATED)) as sandbox:
            assert _nt_xent(sandbox).item() == 0.0
        with Sandbox([("nt_xent", attacks.write_to(scratch))], ISOLATED, host=shared(ISOLATED)) as sandbox:
            assert _nt_xent(sandbox).item() == 1.0  # its own /tmp works, and is not this machine's
    finally:
        (ROOT / "autograder" / "planted.py").unlink(missing_ok=True)
        shutil.rmtree(host_tmp, ignore_errors=True)
    assert not any(Path(p).exists() for p in targets[:3])


def test_the_interpreter_start_up_is_not_part_of_the_students_time_limit():
    # A start-up limit far below the time torch takes to import: only the cell definitions count against it.
    with Sandbox([("nt_xent", LOSS)], dataclasses.replace(ISOLATED, startup_timeout_s=0.5)) as sandbox:
        assert _nt_xent(sandbox).item() == 1.0


def test_a_start_up_that_fails_is_the_graders_problem_not_the_students():
    with Sandbox([("nt_xent", LOSS)], dataclasses.replace(ISOLATED, boot_timeout_s=0.01)) as sandbox:
        with pytest.raises(GraderError, match="No student code had run"):
            _nt_xent(sandbox)


def test_grading_refuses_where_no_sandbox_can_be_made(monkeypatch):
    monkeypatch.setattr(isolation, "_probe", lambda: "No permissions to create a new namespace")
    with pytest.raises(isolation.SandboxUnavailable, match="user namespaces.*--unsafe-no-sandbox"):
        isolation.require("bwrap")


def test_an_attacker_changes_neither_its_own_grade_nor_the_next_students_nor_a_regrade(tmp_path):
    from autograder.grade import grade
    from corpus import BROKEN, Submission
    root = tmp_path / "course"
    shutil.copytree(ROOT / "source", root / "source", ignore=shutil.ignore_patterns(".hypothesis", "__pycache__"))
    shutil.copy(ROOT / "nbgrader_config.py", root)
    one_direction, no_l2 = BROKEN["loss_one_direction"], BROKEN["loss_no_l2"]
    submissions = {"a_attacker": one_direction[1] + attacks.REWRITE_GRADER + attacks.at_first_call("nt_xent", "_rewrite()"),
                   "b_honest_no_l2": no_l2[1]}
    (root / "incoming").mkdir()
    for student, loss in submissions.items():
        nb = examples.filled_release({**examples.solutions(), "nt_xent": loss})
        (root / "incoming" / f"{student}.ipynb").write_text(json.dumps(nb))
    honest = {"a_attacker": Submission("a", "", one_direction[2]).expected,
              "b_honest_no_l2": Submission("b", "", no_l2[2]).expected}
    before = attacks.tree_digest(ROOT), attacks.tree_digest(root, ("source", "incoming"))
    limits = dataclasses.replace(TRAINING, sandbox=attacks.sandbox_mode())
    for _ in range(2):  # the batch, then a regrade
        rows = grade(root / "incoming", root=root, workers=1, limits=limits)
        assert {s: sum(c["points"] or 0 for c in r.cells.values()) for s, r in rows.items()} == honest
    assert (attacks.tree_digest(ROOT), attacks.tree_digest(root, ("source", "incoming"))) == before


# --- each check starts clean, and a sandbox's cost is bounded (issue 19, C) ------------------------------------

LEAVE_BEHIND = attacks.DAEMON + '''
def nt_xent(z_i, z_j, temperature=0.5):
    _start_daemon()
    for path in ("/tmp/home/left-behind", "/dev/shm/left-behind"):
        with open(path, "w") as file:
            file.write("x")
    return torch.tensor(1.0)
'''
LOOK_FOR_IT = f'''
import os

def nt_xent(z_i, z_j, temperature=0.5):
    found = [p for p in ("/tmp/home/left-behind", "/dev/shm/left-behind") if os.path.exists(p)]
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and b"{attacks.DAEMON_TOKEN}" in open(f"/proc/{{entry}}/cmdline", "rb").read():
                found.append(entry)
        except OSError:
            pass
    return torch.tensor(float(len(found)))
'''
STOP_THE_ZYGOTE = '''
import os, signal

def _parent(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("PPid:"):
            return int(line.split()[1])

def nt_xent(z_i, z_j, temperature=0.5):
    pid, stopped = "self", 0
    for _ in range(3):   # the student process's parent, its parent, and the zygote above them
        pid = _parent(pid)
        if pid and pid not in (1, os.getpid()):
            try:
                os.kill(pid, signal.SIGSTOP)
                stopped += 1
            except OSError:
                pass
    return torch.tensor(float(stopped))
'''


def test_each_check_starts_clean_of_what_an_earlier_check_left():
    try:
        with SandboxHost(ISOLATED) as host:
            with Sandbox([("nt_xent", LEAVE_BEHIND)], ISOLATED, host=host) as first:
                assert _nt_xent(first).item() == 1.0
                assert _within(10, lambda: attacks.processes_with(attacks.DAEMON_TOKEN)), "the daemon never started"
            assert _within(5, lambda: not attacks.processes_with(attacks.DAEMON_TOKEN)), "the daemon outlived its check"
            with Sandbox([("nt_xent", LOOK_FOR_IT)], ISOLATED, host=host) as second:
                assert _nt_xent(second).item() == 0.0, "the next check found what the first left behind"
    finally:
        for pid in attacks.processes_with(attacks.DAEMON_TOKEN):
            os.kill(pid, signal.SIGKILL)
        for path in ("/tmp/home/left-behind", "/dev/shm/left-behind"):
            Path(path).unlink(missing_ok=True)


def test_a_check_cannot_stop_the_zygote_that_forks_the_next():
    with SandboxHost(ISOLATED) as host:
        with Sandbox([("nt_xent", STOP_THE_ZYGOTE)], ISOLATED, host=host) as first:
            _nt_xent(first)
        with Sandbox([("nt_xent", LOSS)], ISOLATED, host=host) as second:
            assert _nt_xent(second).item() == 1.0
        assert host.boots == 1, "the zygote had to be started again: a check stopped it"


FILL = '''
def nt_xent(z_i, z_j, temperature=0.5):
    written = []
    for folder in ("/tmp/home", "/dev/shm", "/tmp", "/dev"):
        count = 0
        try:
            with open(folder + "/simclr-fill", "wb") as file:
                for _ in range(128):
                    file.write(bytes(2**20))
                    file.flush()
                    count += 1
        except OSError:
            pass
        written.append(count)
    return torch.tensor(written, dtype=torch.float32)
'''


def test_a_checks_scratch_space_is_bounded_and_the_rest_is_read_only():
    limits = dataclasses.replace(ISOLATED, scratch_mb=32)
    try:
        with Sandbox([("nt_xent", FILL)], limits) as sandbox:
            home, shm, tmp, dev = _nt_xent(sandbox).tolist()
    finally:
        for path in ("/tmp/home/simclr-fill", "/dev/shm/simclr-fill", "/tmp/simclr-fill", "/dev/simclr-fill"):
            Path(path).unlink(missing_ok=True)
    assert home <= 32 and shm <= 32, f"wrote {home:.0f} MiB into /tmp/home and {shm:.0f} MiB into /dev/shm (32 allowed)"
    assert tmp == dev == 0, "/tmp or /dev is writable"


needs_cgroup = pytest.mark.skipif(bool(cgroups.unavailable()), reason=cgroups.unavailable() or "")

FORKS = '''
import os, time

def nt_xent(z_i, z_j, temperature=0.5):
    started = 0
    for _ in range(300):
        try:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            started += 1
        except OSError:
            break
    return torch.tensor(float(started))
'''


@needs_cgroup
def test_the_processes_of_a_sandbox_are_bounded():
    limits = dataclasses.replace(ISOLATED, max_processes=64)
    with Sandbox([("nt_xent", FORKS)], limits) as sandbox:
        assert _nt_xent(sandbox).item() < 64


HOG = '''
import os, time

def nt_xent(z_i, z_j, temperature=0.5):
    children = []
    for _ in range(8):
        pid = os.fork()
        if pid == 0:
            try:
                block = b"x" * (200 * 2**20)
                time.sleep(30)
            finally:
                os._exit(0)
        children.append(pid)
    time.sleep(8)
    return torch.tensor(float(sum(os.waitpid(pid, os.WNOHANG) == (0, 0) for pid in children)))
'''


@needs_cgroup
def test_the_memory_of_a_sandbox_is_bounded_as_a_whole():
    # Each process stays under its own limit; together they would take 1.6 GiB more than the 1 GiB of the sandbox.
    limits = dataclasses.replace(ISOLATED, memory_mb=1024, zygote_mb=0, check_timeout_s=40)
    with Sandbox([("nt_xent", HOG)], limits) as sandbox:
        try:
            alive = _nt_xent(sandbox).item()
        except StudentCodeError as error:
            assert "killed by signal 9" in str(error)
        else:
            assert alive < 8, "every process kept its memory"


def test_nothing_a_student_process_prints_reaches_the_graders_disk():
    flood = ("import sys\n\ndef nt_xent(z_i, z_j, temperature=0.5):\n    for _ in range(64):\n"
             "        sys.stdout.write('x' * 2**20)\n        sys.stderr.write('x' * 2**20)\n"
             "    return torch.tensor(1.0)\n")
    with Sandbox([("nt_xent", flood)], ISOLATED, host=shared(ISOLATED)) as sandbox:
        assert _nt_xent(sandbox).item() == 1.0
        assert sandbox.host.log_path.stat().st_size < 2**16


# --- what the review of the boundary found (issue 19): each fails with its protection off -----------------------

STOP_READING = '''
from simclr_helpers import wire

def nt_xent(z_i, z_j, temperature=0.5):
    wire.receive = lambda *args, **kwargs: __import__("time").sleep(3600)   # this process reads no more requests
    return (z_i * z_j).sum() * 0 + 1.0
'''
STOP_READING_THE_COURSE_LOSS = '''
def train_epoch(encoder, head, loader, optimizer, temperature=0.5, device="cpu", progress=True):
    from simclr_helpers import wire
    wire.receive = lambda *args, **kwargs: __import__("time").sleep(3600)   # never read the grader's answer
    z = torch.randn(256, 256, dtype=torch.float64)   # an answer of 1 MiB: more than a socket's buffer
    return nt_xent(z, z.clone(), 0.5)
'''


def _finishes(call, seconds: float) -> tuple[bool, list]:
    """Run ``call`` in a thread: whether it finished within ``seconds``, and what it raised."""
    import threading
    raised: list = []

    def run():
        try:
            call()
        except BaseException as error:  # noqa: BLE001
            raised.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), raised


def test_a_student_process_that_stops_reading_costs_one_time_limit():
    limits = dataclasses.replace(FAST, check_timeout_s=3, overload_factor=2)
    with Sandbox([("nt_xent", STOP_READING)], limits, host=shared(limits)) as sandbox:
        assert _nt_xent(sandbox).item() == 1.0
        big = torch.ones(2048, 512)   # 8 MiB of request that nobody reads
        finished, raised = _finishes(lambda: sandbox.run("nt_xent", z_i=big, z_j=big, temperature=0.5), 30)
        assert finished, "the grader waited for ever to send a request the student process did not read"
    assert raised and isinstance(raised[0], StudentCodeError) and "time limit" in str(raised[0]), raised


def test_a_train_epoch_that_never_reads_the_course_loss_costs_one_time_limit():
    from autograder.checks.grading import _run_check
    from autograder.checks.registry import BY_GRADE_ID
    limits = dataclasses.replace(FAST, check_timeout_s=5, overload_factor=2)
    cells = list({**examples.solutions(), "train_epoch": STOP_READING_THE_COURSE_LOSS}.items())
    check, results = BY_GRADE_ID["test_train_epoch"], []
    with Sandbox(cells, limits, course_loss=True, host=shared(limits)) as sandbox:
        finished, raised = _finishes(lambda: results.append(_run_check(check, sandbox, dict(cells), limits)), 60)
        assert finished, "the grader waited for ever to send the course's loss"
    assert not raised and not results[0].passed and "time limit" in results[0].message, (raised, results)


def test_a_reply_the_reader_fails_on_in_any_way_fails_only_that_check(monkeypatch):
    from simclr_helpers import wire
    with Sandbox([("nt_xent", LOSS)], FAST, host=shared(FAST)) as sandbox:
        assert _nt_xent(sandbox).item() == 1.0
        receive = wire.receive

        def unexpected(sock, *args, **kwargs):
            if sock is sandbox._socket:
                raise RuntimeError("an error no reader of plain data expects")
            return receive(sock, *args, **kwargs)

        monkeypatch.setattr(wire, "receive", unexpected)
        with pytest.raises(StudentCodeError, match="cannot read.*RuntimeError"):
            _nt_xent(sandbox)
        monkeypatch.setattr(wire, "receive", receive)
        assert _nt_xent(sandbox).item() == 1.0   # the next check gets a new process


def _message(header: dict) -> bytes:
    import json
    import struct
    from simclr_helpers import wire
    text = json.dumps(header).encode()
    return wire.MAGIC + struct.pack("<Q", len(text)) + text


@pytest.mark.parametrize("header", [
    {"data": {"__tensor__": 0}, "tensors": [["float32", [0] + [2**39] * 7]]},   # strides that overflow
    {"data": None, "tensors": [["bool", [0]]] * 4097},    # seconds of the grader's time for nothing
    {"data": {"error": "\ud800"}, "tensors": []},        # a string no file can hold
], ids=["strides that overflow", "thousands of empty tensors", "a lone surrogate"])
def test_the_wire_refuses_what_would_cost_or_break_the_grader_later(header):
    from simclr_helpers import wire
    with pytest.raises(wire.NotPlainData):
        wire.decode(_message(header))


def test_a_course_loss_request_of_any_form_is_refused_as_a_reply_error():
    from autograder.boundary import replies
    request = {"course_loss": {"z_i": torch.ones(2, 3), "z_j": torch.ones(2, 3), "temperature": 10**400}}
    with pytest.raises(replies.ReplyError):
        replies.check_course_loss(request)


def test_an_error_message_that_is_not_unicode_reaches_the_grader_readable():
    cell = "def nt_xent(z_i, z_j, temperature=0.5):\n    raise ValueError('broken \\ud800 here')\n"
    with Sandbox([("nt_xent", cell)], FAST, host=shared(FAST)) as sandbox:
        with pytest.raises(StudentCodeError, match="ValueError: broken . here"):
            _nt_xent(sandbox)


KEYRING = '''
import ctypes, os

def nt_xent(z_i, z_j, temperature=0.5):
    # Every keyring /proc/keys shows (the grader's user and session keyrings among them) linked into this check's
    # own session keyring, searched for the grader's key and for one an earlier check left, then written.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    keyctl, add_key = {"x86_64": (250, 248), "aarch64": (219, 217)}[os.uname().machine]
    call = lambda *args: libc.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    rings = [int(line.split()[0], 16) for line in open("/proc/keys") if line.split()[7] == "keyring"]
    for ring in rings:
        call(keyctl, 8, ring, -3)                                             # KEYCTL_LINK into @s
    found = lambda name: float(call(keyctl, 10, -3, b"user", name, 0) > 0)   # KEYCTL_SEARCH @s, recursively
    seen = [found(b"simclr-graders-key"), found(b"simclr-left-behind")]
    for ring in rings + [-3]:
        call(add_key, b"user", b"simclr-left-behind", b"x", 1, ring)
    return torch.tensor(seen + [found(b"simclr-left-behind")])
'''


def _keyctl():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    numbers = {"x86_64": (250, 248), "aarch64": (219, 217)}.get(os.uname().machine)
    if numbers is None or libc.syscall(numbers[0], 1, None) < 0:   # KEYCTL_JOIN_SESSION_KEYRING
        pytest.skip("no kernel keyrings for this process (another machine, or keyctl forbidden)")
    return libc, numbers


def _remove_keys(libc, keyctl: int, description: str) -> None:
    for ring in (-4, -5):   # @u and @us linked into @s: what is in them is ours to remove
        libc.syscall(keyctl, 8, ring, -3)
    for line in Path("/proc/keys").read_text().splitlines():
        if line.split()[8].startswith(description + ":"):
            libc.syscall(keyctl, 21, int(line.split()[0], 16))   # KEYCTL_INVALIDATE


def test_the_kernel_keyrings_carry_nothing_between_checks_or_from_the_grader():
    # As a grader started from a login has: a session keyring, and a key of its own there and in its user keyring.
    libc, (keyctl, add_key) = _keyctl()
    for ring in (-3, -4):   # @s, @u
        assert libc.syscall(add_key, b"user", b"simclr-graders-key", b"x", 1, ring) > 0
    try:
        with SandboxHost(ISOLATED) as host:
            for check in ("first", "second"):
                with Sandbox([("nt_xent", KEYRING)], ISOLATED, host=host) as sandbox:
                    graders, left_behind, own = _nt_xent(sandbox).tolist()
                assert graders == 0.0, f"the {check} check found the grader's key"
                assert left_behind == 0.0, f"the {check} check found a key an earlier check left"
    finally:
        for description in ("simclr-graders-key", "simclr-left-behind"):
            _remove_keys(libc, keyctl, description)


BUSY = '''
import os, time

def nt_xent(z_i, z_j, temperature=0.5):
    pipes = []
    for _ in range(3):
        read, write = os.pipe()
        if os.fork() == 0:
            end = time.monotonic() + 4
            while time.monotonic() < end:
                pass
            os.write(write, str(time.process_time()).encode())
            os._exit(0)
        os.close(write)
        pipes.append(read)
    return torch.tensor(sum(float(os.read(read, 64)) for read in pipes))
'''


@pytest.mark.skipif(bool(cgroups.cpu_unavailable()), reason=cgroups.cpu_unavailable() or "")
def test_a_sandbox_uses_at_most_its_cpus_however_many_processes_it_starts():
    # Three busy processes for 4 s: 12 CPU-seconds wanted, about 4 allowed to a sandbox of one CPU.
    limits = dataclasses.replace(ISOLATED, threads=1, check_timeout_s=30)
    with Sandbox([("nt_xent", BUSY)], limits) as sandbox:
        used = _nt_xent(sandbox).item()
    assert used < 4 * 1.5, f"the sandbox's processes used {used:.1f} CPU-seconds in 4 s with one CPU allowed"


# --- time limits in the student's CPU time: load never changes a grade ----------------------------------------

needs_cpu_clock = pytest.mark.skipif(bool(cgroups.cpu_time_unavailable()), reason=cgroups.cpu_time_unavailable() or "")


@contextlib.contextmanager
def _busy_machine(processes: int):
    """``processes`` busy loops at the grader's own priority, as other grading jobs would be (each in a session of
    its own: with the kernel's autogroups, processes of one session share one CPU share)."""
    import subprocess
    import sys
    hogs = [subprocess.Popen([sys.executable, "-S", "-c", "while True: pass"], start_new_session=True)
            for _ in range(processes)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def _starve(sandbox: Sandbox) -> None:
    """Give the sandbox's cgroup the least CPU weight there is, and its threads the idle policy: beside any busy
    process they barely run (and wait, runnable, meanwhile)."""
    for folder in sandbox.host.cgroup.folders:
        for name, least in (("cpu.shares", "2"), ("cpu.weight", "1")):
            if (folder / name).exists():
                (folder / name).write_text(least)
    for tid in sandbox.host.cgroup.thread_ids():
        with contextlib.suppress(OSError):
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))


def test_a_check_that_waits_for_ever_costs_one_time_limit_and_fails():
    # Asleep, not computing: the student's code, not the machine, so the check fails (and is not graded again).
    limits = dataclasses.replace(ISOLATED, check_timeout_s=1, overload_factor=2)
    with Sandbox([("nt_xent", "def nt_xent(*a):\n    __import__('time').sleep(3600)\n")], limits, host=shared(limits)) as sandbox:
        sandbox.ensure_started()
        sandbox.start_check(limits.check_timeout_s)
        with pytest.raises(StudentCodeError, match="time limit") as raised:
            _nt_xent(sandbox)
        if sandbox.clock.counts_cpu:
            assert "waits for something that never comes" in str(raised.value)


SPINS = '''
import time

def nt_xent(z_i, z_j, temperature=0.5):
    end = time.process_time() + 1.5
    while time.process_time() < end:
        pass
    return (z_i * z_j).sum() * 0 + 1.0
'''


@needs_cpu_clock
@needs_cgroup
def test_a_check_starved_of_cpu_by_other_work_is_not_graded_rather_than_failed():
    # 1.5 CPU-seconds of work, a limit of 2: only a machine that hardly runs it makes it miss the backstop (9 s).
    limits = dataclasses.replace(ISOLATED, check_timeout_s=2, overload_factor=2)
    with Sandbox([("nt_xent", SPINS)], limits) as sandbox:
        sandbox.ensure_started()
        _starve(sandbox)
        with _busy_machine(2 * (os.cpu_count() or 1)):
            sandbox.start_check(limits.check_timeout_s)
            with pytest.raises(GraderError, match="overloaded"):
                _nt_xent(sandbox)


# A correct submission's slowest check uses about 0.8 CPU-seconds of its student's processes on an idle machine (the
# augmentation rates: 1,000 views), about 1.5 beside busy processes (which share the CPU's caches and cores), and
# 4 s of wall-clock time beside twice as many busy processes as CPUs.
BUSY_LIMIT_S = 3.0


@needs_cpu_clock
def test_a_busy_machine_changes_no_grade_and_still_stops_an_endless_loop():
    """The reference and a submission whose nt_xent never returns (the rest correct), graded while twice as many
    busy processes as CPUs run: the scores of an idle machine, on limits that wall-clock time misses here."""
    from corpus import CORPUS, build
    chosen = {s.name: s for s in CORPUS if s.name in ("reference", "tamper_endless_call")}
    limits = dataclasses.replace(ISOLATED, check_timeout_s=BUSY_LIMIT_S, startup_timeout_s=BUSY_LIMIT_S)
    none = TrainingRunSettings(device="cuda-that-is-not-here", without_device="follow_checks")
    hosts, threads = Hosts(), torch.get_num_threads()
    torch.set_num_threads(1)   # as a grading worker does: the grader's own arithmetic is small
    with _busy_machine(2 * (os.cpu_count() or 1)), contextlib.closing(hosts):
        for name, submission in chosen.items():
            cells = answer_cells(nbformat.reads(build(submission), as_version=4))
            results = grade_cells(cells, limits, none, hosts=hosts)
            failed = {grade_id for grade_id, result in results.items() if not result.passed}
            assert failed == set(submission.fails), (name, {g: results[g].message for g in failed})
    torch.set_num_threads(threads)
    endless = "test_nt_xent_formula_hidden"
    assert "time limit" in results[endless].message and "CPU time" in results[endless].message, results[endless]
