"""Grade one submission: take its answer cells out of the notebook and run every check on a separate process."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from dataclasses import asdict, dataclass

import nbformat
from simclr_helpers import resolve_data_dir
from simclr_helpers.checks import StudentCodeError
from simclr_helpers.definitions import graded_cells, name_error_hint

from autograder.boundary.integrity import CodeSnapshot
from autograder.checks.registry import CHECKS, COMPONENTS, TRAINING_RUN_ID, Check
from autograder.boundary.sandbox import GraderError, Limits, Sandbox, SandboxHost
from autograder.checks.training_run import RUN_COMPONENT_CELLS, TrainingRunSettings, device_available, training_run, will_run


@dataclass
class CheckResult:
    grade_id: str
    passed: bool
    message: str
    seconds: float
    cpu_seconds: float | None = None   # of the student's processes, where the sandbox's cgroup counts them


def answer_cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """The cells the grader defines, in order: the helpers the answer cells need from the student's other code cells
    (definitions only), then the five answer cells (by nbgrader grade_id, else the last cell defining the
    component), without magics. See ``simclr_helpers.definitions.graded_cells``: the self-check uses the same."""
    return graded_cells(nb.cells, COMPONENTS)


def digest(cells: list[tuple[str, str]]) -> str:
    """Identifies the graded code, so results computed ahead can be matched to a notebook."""
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def _run_check(check: Check, sandbox: Sandbox, cells: dict[str, str], limits: Limits) -> CheckResult:
    """One check on one student process. A cell that raised while being defined keeps what it defined before (as
    in a notebook); its error is named if the check fails."""
    try:
        sandbox.ensure_started()
    except StudentCodeError as error:
        return CheckResult(check.grade_id, False, f"your code could not be loaded: {error}", 0.0)
    start = time.monotonic()
    if check.component not in cells:
        return CheckResult(check.grade_id, False, f"no cell defines {check.component}", 0.0)
    sandbox.start_check(limits.check_timeout_s)
    try:
        check.run(sandbox)
        passed, message = True, "passed"
    except (AssertionError, StudentCodeError) as error:
        passed, message = False, str(error) or "a check failed"
    except GraderError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever the student's code provoked, this check fails, the rest go on
        passed, message = False, f"{type(error).__name__}: {error}"
    if check.component in sandbox.cell_errors and not passed:
        message = f"the cell defining {check.component} failed: {sandbox.cell_errors[check.component]}; {message}"
    elif not passed and "NameError" in message:
        hint = name_error_hint(message, sandbox.left_out, sandbox.cell_errors)
        message += f"; {hint}" if hint else ""
    cpu = round(sandbox.clock.cpu_used_s(), 3) if sandbox.clock.counts_cpu else None
    return CheckResult(check.grade_id, passed, message[:2000], round(time.monotonic() - start, 2), cpu)


def _on_gpu(settings: TrainingRunSettings) -> bool:
    return settings.device != "cpu" and device_available(settings.device)


def _data_dirs() -> tuple[str, ...]:
    return (str(resolve_data_dir().absolute()),)


def training_sandbox(cells: list[tuple[str, str]], limits: Limits, settings: TrainingRunSettings,
                     code: CodeSnapshot | None = None, host: SandboxHost | None = None) -> Sandbox:
    """The student process of a training run: the run's time limit, no memory limit on a GPU (CUDA maps more
    than any data-segment limit allows); its own sandbox (with the data folder and, on a GPU, the device
    nodes) unless ``host`` is given, which must have been made with them."""
    on_gpu = _on_gpu(settings)
    run_limits = dataclasses.replace(limits, check_timeout_s=settings.timeout_s,
                                     cpu_s=max(limits.cpu_s, int(2 * settings.timeout_s)),
                                     memory_mb=0 if on_gpu else limits.memory_mb)
    return Sandbox(cells, run_limits, code=code, data_dirs=_data_dirs(), gpu=on_gpu, host=host)


def _grade_training_run(cells: list[tuple[str, str]], limits: Limits, settings: TrainingRunSettings,
                        components_pass: bool, host: SandboxHost) -> CheckResult:
    start = time.monotonic()
    with contextlib.ExitStack() as stack:
        sandbox = stack.enter_context(training_sandbox(cells, limits, settings, host=host)) \
            if will_run(settings) else None
        try:
            if sandbox is not None:
                sandbox.ensure_started()
                sandbox.start_check(settings.timeout_s, wall_clock=True)
            passed, message = True, training_run(sandbox, settings, components_pass)
        except (AssertionError, StudentCodeError) as error:
            passed, message = False, str(error)
        except GraderError:
            raise
        except Exception as error:  # noqa: BLE001
            passed, message = False, f"{type(error).__name__}: {error}"
    return CheckResult(TRAINING_RUN_ID, passed, message[:2000], round(time.monotonic() - start, 2))


def components_pass(results: dict[str, dict]) -> bool:
    """Whether the checks of the four components the training run uses passed (results as dicts)."""
    return all(results[grade_id]["passed"] for grade_id in RUN_COMPONENT_CELLS)


class Hosts:
    """The sandbox of one grading process, kept from one submission to the next, so that its zygote starts once
    per batch instead of once per submission. Submissions share it as a submission's checks do: no student process
    outlives its check, and each check has namespaces and scratch space of its own (``worker.py``), so nothing one
    leaves reaches the next."""

    def __init__(self):
        self._key: tuple | None = None
        self._host: SandboxHost | None = None

    def get(self, limits: Limits, code: CodeSnapshot | None, data_dirs: tuple[str, ...], gpu: bool) -> SandboxHost:
        """The host for these settings: the one already started if they are the same, else a new one."""
        key = (limits, code.digest() if code is not None else None, data_dirs, gpu)
        if key != self._key:
            self.close()
            self._host, self._key = SandboxHost(limits, code, data_dirs, gpu), key
        return self._host

    def close(self) -> None:
        if self._host is not None:
            self._host.close()
        self._host = self._key = None


def _host_settings(limits: Limits, settings: TrainingRunSettings | None) -> tuple[tuple[str, ...], bool]:
    """The data folders and device a submission's sandbox needs: those of its training run, if it runs."""
    runs = settings is not None and will_run(settings)
    return (_data_dirs() if runs else (), runs and _on_gpu(settings))


def grade_cells(cells: list[tuple[str, str]], limits: Limits = Limits(),
                training: TrainingRunSettings | None = TrainingRunSettings(),
                code: CodeSnapshot | None = None, hosts: Hosts | None = None) -> dict[str, CheckResult]:
    """Run every check on the given answer cells; a check graded ``alone`` gets the course's loss for ``nt_xent``.

    All of a submission's student processes are forks of one sandboxed zygote (``host.SandboxHost``), so the
    interpreter starts once per submission; each check gets its own process, in namespaces of its own. A cell that
    hangs or crashes while being defined is left out of every later check too. ``training=None`` leaves the
    training run out (``grade_training_run`` grades it apart, on a GPU worker). ``code``: the grader's files as
    read at the start of the batch (default: this process's first read). ``hosts``: the grading process's sandbox,
    kept for the next submission (default: one made and closed for this one). Raises ``GraderError`` when the
    sandbox cannot be started for a reason that is not the student's."""
    by_component = dict(cells)
    results: dict[str, CheckResult] = {}
    settings = _host_settings(limits, training)
    host = hosts.get(limits, code, *settings) if hosts is not None else SandboxHost(limits, code, *settings)
    remaining, cell_errors = list(cells), {}
    with contextlib.nullcontext(host) if hosts is not None else host:
        for check in sorted(CHECKS, key=lambda c: c.alone):
            with Sandbox(remaining, limits, course_loss=check.alone, host=host) as sandbox:
                sandbox.cell_errors.update(cell_errors)
                results[check.grade_id] = _run_check(check, sandbox, by_component, limits)
                remaining, cell_errors = sandbox.cells, sandbox.cell_errors
        ordered = {check.grade_id: results[check.grade_id] for check in CHECKS}
        if training is not None:
            passing = components_pass({k: asdict(v) for k, v in ordered.items()})
            ordered[TRAINING_RUN_ID] = _grade_training_run(remaining, limits, training, passing, host)
    return ordered


def grade_training_run(cells: list[tuple[str, str]], limits: Limits, training: TrainingRunSettings,
                       results: dict[str, dict], code: CodeSnapshot | None = None) -> CheckResult:
    """The training run alone, in a sandbox of its own, given the checks' ``results`` (as dicts)."""
    with SandboxHost(limits, code, *_host_settings(limits, training)) as host:
        return _grade_training_run(cells, limits, training, components_pass(results), host)
