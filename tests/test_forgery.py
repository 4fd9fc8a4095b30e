"""Forged verdicts: attacks that make the student process report what the checks want, graded as the grader grades.

Each scores only the honest work, with the definitions-only filter on (the default) and off (every top-level
statement of the answer cells runs, patches of the course's helpers, of torch and of optimizers included): no
verdict rests on the filter. What makes each fail is named, and where the protection has a switch the attack is
shown to succeed with it off.
"""
from __future__ import annotations

import dataclasses
from functools import partial

import attacks
import pytest
from corpus import release_stubs

from autograder.boundary import sandbox as sandbox_module
from autograder.course.examples import solutions
from autograder.checks.grading import _run_check
from autograder.checks.registry import BY_GRADE_ID, COMPONENTS, GRADER_SEED, Check
from autograder.boundary.sandbox import Limits, Sandbox, SandboxHost
from autograder.course.variants import PROBE_NOT_FROZEN, TRAIN_NO_ZERO_GRAD
from simclr_helpers import checks

LIMITS = Limits(check_timeout_s=60, startup_timeout_s=60, memory_mb=2048)
WHOLE_CELLS = dataclasses.replace(LIMITS, definitions_only=False)
PROBE = ("test_linear_probe", "test_linear_probe_hidden")
TRAIN = ("test_train_epoch", "test_train_epoch_hidden")


def _graded(answers: dict[str, str], grade_ids: tuple[str, ...], limits: Limits = LIMITS,
            extra: tuple[Check, ...] = ()) -> dict[str, tuple[bool, str]]:
    """(passed, message) of the given test cells (and ``extra`` checks), each graded as the grader grades it."""
    cells = list({**solutions(), **answers}.items())
    graded = {}
    with SandboxHost(limits) as host:
        for check in [BY_GRADE_ID[g] for g in grade_ids] + list(extra):
            with Sandbox(cells, limits, course_loss=check.alone, host=host) as sandbox:
                result = _run_check(check, sandbox, dict(cells), limits)
            graded[check.grade_id] = (result.passed, result.message)
    return graded


FORGERIES = [
    ("probe op reports the old encoder", {"linear_probe": PROBE_NOT_FROZEN + attacks.FORGE_PROBE_OP}, PROBE),
    ("train op's optimizer clears gradients", {"train_epoch": TRAIN_NO_ZERO_GRAD + attacks.FORGE_TRAIN_OP},
     ("test_train_epoch_hidden",)),
    ("probe patches the op's reading", {"linear_probe": attacks.FORGE_PROBE_IN_CALL}, PROBE),
    ("probe moves the encoder out of the grader's memory", {"linear_probe": attacks.FORGE_PROBE_DETACHED}, PROBE),
    ("probe returns a number and trains nothing", {"linear_probe": attacks.FORGE_PROBE_ACCURACY}, PROBE),
    ("probe compares the labels of its calls", {"linear_probe": attacks.FORGE_PROBE_LABEL_MEMORY}, PROBE),
]


@pytest.mark.parametrize("limits", [LIMITS, WHOLE_CELLS], ids=["definitions only", "whole cells"])
@pytest.mark.parametrize("name, answers, grade_ids", FORGERIES, ids=[f[0] for f in FORGERIES])
def test_a_forged_fact_scores_only_the_honest_work(name, answers, grade_ids, limits):
    graded = _graded(answers, grade_ids, limits)
    assert not any(passed for passed, _ in graded.values()), f"{name}: the forgery was believed: {graded}"


def test_a_probe_that_hides_its_training_from_the_weights_is_caught_by_what_it_learned():
    # The weights the grader reads are those it handed in (the probe moved the encoder out of that memory): only
    # the consequence, a probe that learns labels the frozen features do not hold, gives it away.
    graded = _graded({"linear_probe": attacks.FORGE_PROBE_DETACHED}, PROBE, WHOLE_CELLS)
    for passed, message in graded.values():
        assert not passed and "the encoder was trained" in message, message


def test_the_accuracy_is_measured_against_labels_the_probe_cannot_know():
    graded = _graded({"linear_probe": attacks.FORGE_PROBE_ACCURACY}, PROBE)
    assert not graded["test_linear_probe"][0] and "test labels changed" in graded["test_linear_probe"][1]
    assert not graded["test_linear_probe_hidden"][0]


def test_each_probe_call_gets_a_fresh_process(monkeypatch):
    # A probe that compares the labels of its calls passes the relabelled-labels check where calls share a process.
    assert not _graded({"linear_probe": attacks.FORGE_PROBE_LABEL_MEMORY}, ("test_linear_probe",))["test_linear_probe"][0]
    monkeypatch.setattr(sandbox_module, "FRESH_PROCESS_OPS", frozenset())
    assert _graded({"linear_probe": attacks.FORGE_PROBE_LABEL_MEMORY}, ("test_linear_probe",))["test_linear_probe"][0]


@pytest.mark.parametrize("limits", [LIMITS, WHOLE_CELLS], ids=["definitions only", "whole cells"])
def test_every_op_on_the_reference_scores_what_the_released_stubs_score(limits):
    # The released stubs, and top-level code that makes every op run the reference's components (inlined).
    stubs = release_stubs()
    reference = {name: source for name, source in solutions().items() if name in COMPONENTS}
    answers = {**stubs, "get_augmentations": stubs["get_augmentations"] + attacks.forge_every_op(reference)}
    assert not any(passed for passed, _ in _graded(answers, tuple(BY_GRADE_ID), limits).values())


def test_the_step_count_is_read_off_the_weights_not_the_counter():
    # The notebook's visible test counts steps in the student's process: a forged count passes it, never the grader.
    counting = Check("counted", "train_epoch", partial(checks.check_train_epoch, seed=GRADER_SEED), alone=True)
    graded = _graded({"train_epoch": attacks.FORGE_STEPS_IN_CALL}, TRAIN, extra=(counting,))
    assert {grade_id: passed for grade_id, (passed, _) in graded.items()} == {
        "test_train_epoch": False, "test_train_epoch_hidden": False, "counted": True}


def test_a_name_set_by_a_left_out_statement_is_explained():
    loss = ("def _scale():\n    return 1.0\n\nSCALE = _scale()\n\n"
            "def nt_xent(z_i, z_j, temperature=0.5):\n    return (z_i * z_j).sum() * 0 + SCALE\n")
    with SandboxHost(LIMITS) as host, Sandbox([("nt_xent", loss)], LIMITS, host=host) as sandbox:
        result = _run_check(BY_GRADE_ID["test_nt_xent"], sandbox, {"nt_xent": loss}, LIMITS)
    assert not result.passed
    assert "NameError" in result.message and "runs only imports, def, class and simple values" in result.message
    assert "`SCALE = _scale()`" in result.message
