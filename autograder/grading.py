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

from .integrity import CodeSnapshot
from .registry import CHECKS, COMPONENTS, TRAINING_RUN_ID, Check
from .sandbox import GraderError, Limits, Sandbox, SandboxHost
from .training_run import RUN_COMPONENT_CELLS, TrainingRunSettings, device_available, training_run, will_run


@dataclass
class CheckResult:
    grade_id: str
    passed: bool
    message: str
    seconds: float


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
    sandbox.deadline = start + limits.check_timeout_s
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
    return CheckResult(check.grade_id, passed, message[:2000], round(time.monotonic() - start, 2))


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
                sandbox.deadline = time.monotonic() + settings.timeout_s
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


def _training_host(limits: Limits, settings: TrainingRunSettings, code: CodeSnapshot | None) -> SandboxHost:
    runs = will_run(settings)
    return SandboxHost(limits, code, _data_dirs() if runs else (), runs and _on_gpu(settings))


def grade_cells(cells: list[tuple[str, str]], limits: Limits = Limits(),
                training: TrainingRunSettings | None = TrainingRunSettings(),
                code: CodeSnapshot | None = None) -> dict[str, CheckResult]:
    """Run every check on the given answer cells; a check graded ``alone`` gets the course's loss for ``nt_xent``.

    All of a submission's student processes are forks of one sandboxed zygote (``host.SandboxHost``), so the
    interpreter starts once per submission; each check gets its own process, in namespaces of its own. A cell that
    hangs or crashes while being defined is left out of every later check too. ``training=None`` leaves the
    training run out (``grade_training_run`` grades it apart, on a GPU worker). ``code``: the grader's files as
    read at the start of the batch (default: this process's first read). Raises ``GraderError`` when the sandbox
    cannot be started for a reason that is not the student's."""
    by_component = dict(cells)
    results: dict[str, CheckResult] = {}
    host = _training_host(limits, training, code) if training is not None else SandboxHost(limits, code)
    remaining, cell_errors = list(cells), {}
    with host:
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
    with _training_host(limits, training, code) as host:
        return _grade_training_run(cells, limits, training, components_pass(results), host)
