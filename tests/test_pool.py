"""The local pool: a submission that overruns its wall-clock budget is not graded, and the batch goes on."""
from __future__ import annotations

import dataclasses

import attacks
from corpus import release_stubs

from autograder.course.examples import solutions
from autograder.boundary.integrity import CodeSnapshot
from autograder.course.jobs import Job
from autograder.course.pool import budget_s, local_pool
from autograder.checks.registry import COMPONENTS, CHECKS
from autograder.boundary.sandbox import Limits
from autograder.checks.training_run import TrainingRunSettings

LIMITS = Limits(check_timeout_s=5, startup_timeout_s=10, memory_mb=2048, sandbox=attacks.sandbox_mode())
NO_RUN = TrainingRunSettings(device="cuda-that-is-not-here")


def test_a_submission_over_its_budget_gets_a_not_graded_row_and_the_next_is_graded():
    correct = tuple((name, solutions()[name]) for name in COMPONENTS)
    stubs = tuple((name, release_stubs()[name]) for name in COMPONENTS)
    before = set(attacks.processes_with("simclr-sandbox-"))
    jobs = [Job("slow", correct, dataclasses.replace(LIMITS, budget_s=2.0), NO_RUN), Job("next", stubs, LIMITS, NO_RUN)]
    outcomes = list(local_pool(jobs, CodeSnapshot.read(), workers=1))
    assert [student for student, _, _ in outcomes] == ["slow", "next"]
    (_, slow, seconds), (_, graded, _) = outcomes
    assert isinstance(slow, str) and slow.startswith("not graded") and "budget of 2 s" in slow, slow
    assert seconds < 60
    assert isinstance(graded, dict) and set(graded["results"]) >= {check.grade_id for check in CHECKS}
    assert set(attacks.processes_with("simclr-sandbox-")) <= before, "the overrunning submission's sandbox outlived it"


def test_the_default_budget_covers_every_limit_of_a_submission():
    job = Job("any", (), LIMITS, TrainingRunSettings(device="cpu", timeout_s=900))
    assert budget_s(job) > LIMITS.boot_timeout_s + len(CHECKS) * LIMITS.check_timeout_s + 900
