"""Which checks grade which test cell of the notebook (by nbgrader grade_id)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from simclr_helpers import checks as visible

from autograder.checks import hidden_checks as hidden

COMPONENTS = ("get_augmentations", "ProjectionHead", "nt_xent", "train_epoch", "linear_probe")
# The visible checks run on other inputs than the notebook's (seed 0), so hard-coded answers do not pass.
GRADER_SEED = 1


@dataclass(frozen=True)
class Check:
    """The checks behind one test cell: the component they grade and a function of a ``student``."""
    grade_id: str
    component: str
    run: Callable[[Any], None]
    alone: bool = False  # graded with the reference for every other component it calls

    @property
    def hidden(self) -> bool:
        return self.grade_id.endswith("_hidden")


CHECKS: tuple[Check, ...] = (
    Check("test_get_augmentations", "get_augmentations", partial(visible.check_get_augmentations, seed=GRADER_SEED)),
    Check("test_get_augmentations_hidden", "get_augmentations", hidden.get_augmentations),
    Check("test_projection_head", "ProjectionHead", partial(visible.check_projection_head, seed=GRADER_SEED)),
    Check("test_projection_head_hidden", "ProjectionHead", hidden.projection_head),
    Check("test_nt_xent", "nt_xent", partial(visible.check_nt_xent_of, seed=GRADER_SEED)),
    Check("test_nt_xent_formula_hidden", "nt_xent", hidden.nt_xent_formula),
    Check("test_nt_xent_properties_hidden", "nt_xent", hidden.nt_xent_properties),
    # The notebook's visible test counts optimizer steps in the student's process; the grader reads them off the weights.
    Check("test_train_epoch", "train_epoch", partial(hidden.train_epoch_steps, seed=GRADER_SEED), alone=True),
    Check("test_train_epoch_hidden", "train_epoch", hidden.train_epoch, alone=True),
    Check("test_linear_probe", "linear_probe", partial(visible.check_linear_probe, seed=GRADER_SEED)),
    Check("test_linear_probe_hidden", "linear_probe", hidden.linear_probe),
)
BY_GRADE_ID = {check.grade_id: check for check in CHECKS}
# The training run is graded after the checks above: its points can depend on theirs (see training_run.py).
TRAINING_RUN_ID = "test_training_run_hidden"
GRADE_IDS = tuple(BY_GRADE_ID) + (TRAINING_RUN_ID,)
# Test cells worth 0 points that no check grades and the grader never runs (the self-check runs in the student's
# notebook, so that Validate fails while it finds a problem): grade_id -> their output in the autograded notebook.
NOT_GRADED = {"self_check": "not run by the grader: the self-check is for your notebook (0 points)"}


def run_in_kernel(grade_id: str, namespace: dict) -> None:
    """The hidden part of a test cell when the instructor runs the source notebook: the checks, in this kernel.

    Grading never relies on this (the autograder runs the same checks on a separate process); it lets
    ``nbgrader validate`` on the source show that the solutions pass.
    """
    from simclr_helpers.checks import InKernel, StudentCodeError

    from autograder.checks.training_run import RUN_COMPONENT_CELLS, TrainingRunSettings, training_run
    student = InKernel(namespace)
    try:
        if grade_id == TRAINING_RUN_ID:
            passing = []
            for component_cell in RUN_COMPONENT_CELLS:
                try:
                    BY_GRADE_ID[component_cell].run(student)
                    passing.append(True)
                except (AssertionError, StudentCodeError):
                    passing.append(False)
            print(training_run(student, TrainingRunSettings(), all(passing)))
        else:
            BY_GRADE_ID[grade_id].run(student)
    except StudentCodeError as error:
        raise AssertionError(str(error)) from None
