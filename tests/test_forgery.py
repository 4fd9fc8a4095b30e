"""Forged verdicts: each attack makes the course's ops report what the checks want. Isolated grading (the default)
scores the honest work; each test also grades the same cells with ``Limits(isolate=False)`` (the cells run whole
in one process that reports every fact itself) and shows the attack succeeding there."""
from __future__ import annotations

import dataclasses
from functools import partial

import attacks
import pytest
from corpus import release_stubs

from autograder.examples import solutions
from autograder.grading import REFERENCE_LOSS, _run_check
from autograder.registry import BY_GRADE_ID, COMPONENTS, GRADER_SEED, Check
from autograder.sandbox import Limits, Sandbox, SandboxHost
from autograder.variants import PROBE_NOT_FROZEN, TRAIN_NO_ZERO_GRAD
from simclr_helpers import checks

LIMITS = Limits(check_timeout_s=60, startup_timeout_s=60, memory_mb=2048)
PROBE = ("test_linear_probe", "test_linear_probe_hidden")
TRAIN = ("test_train_epoch", "test_train_epoch_hidden")


def _passed(answers: dict[str, str], grade_ids: tuple[str, ...], isolate: bool,
            extra: tuple[Check, ...] = ()) -> dict[str, bool]:
    """Which of the given test cells (and ``extra`` checks) pass, each graded as the grader grades it."""
    cells = list({**solutions(), **answers}.items())
    limits = dataclasses.replace(LIMITS, isolate=isolate)
    passed = {}
    with SandboxHost(limits) as host:
        for check in [BY_GRADE_ID[g] for g in grade_ids] + list(extra):
            inject = REFERENCE_LOSS.read_text() if check.alone else None
            with Sandbox(cells, limits, inject=inject, host=host) as sandbox:
                result = _run_check(check, sandbox, dict(cells), limits)
            passed[check.grade_id] = result.passed
    return passed


@pytest.mark.parametrize("name, answers, grade_ids", [
    ("probe op reports the old encoder", {"linear_probe": PROBE_NOT_FROZEN + attacks.FORGE_PROBE_OP}, PROBE),
    ("train op's optimizer clears gradients", {"train_epoch": TRAIN_NO_ZERO_GRAD + attacks.FORGE_TRAIN_OP},
     ("test_train_epoch_hidden",)),
    ("probe patches the op's reading", {"linear_probe": attacks.FORGE_PROBE_IN_CALL}, PROBE),
])
def test_a_forged_fact_scores_only_the_honest_work(name, answers, grade_ids):
    assert not any(_passed(answers, grade_ids, isolate=True).values()), f"{name}: the forgery was believed"
    assert all(_passed(answers, grade_ids, isolate=False).values()), f"{name}: the attack does not work unprotected"


def test_every_op_on_the_reference_scores_what_the_released_stubs_score():
    stubs = release_stubs()
    reference = {name: source for name, source in solutions().items() if name in COMPONENTS}
    answers = {**stubs, "get_augmentations": stubs["get_augmentations"] + attacks.forge_every_op(reference)}
    grade_ids = tuple(BY_GRADE_ID)
    assert not any(_passed(answers, grade_ids, isolate=True).values())
    assert all(_passed(answers, grade_ids, isolate=False).values())


def test_the_step_count_is_read_off_the_weights_not_the_counter():
    counting = Check("counted", "train_epoch", partial(checks.check_train_epoch, seed=GRADER_SEED), alone=True)
    passed = _passed({"train_epoch": attacks.FORGE_STEPS_IN_CALL}, TRAIN, isolate=True, extra=(counting,))
    assert passed == {"test_train_epoch": False, "test_train_epoch_hidden": False, "counted": True}


def test_a_name_set_by_a_left_out_statement_is_explained():
    loss = ("def _scale():\n    return 1.0\n\nSCALE = _scale()\n\n"
            "def nt_xent(z_i, z_j, temperature=0.5):\n    return (z_i * z_j).sum() * 0 + SCALE\n")
    with SandboxHost(LIMITS) as host, Sandbox([("nt_xent", loss)], LIMITS, host=host) as sandbox:
        result = _run_check(BY_GRADE_ID["test_nt_xent"], sandbox, {"nt_xent": loss}, LIMITS)
    assert not result.passed
    assert "NameError" in result.message and "only the definitions" in result.message
    assert "`SCALE = _scale()`" in result.message
