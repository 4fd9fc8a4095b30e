"""The notebook's self-check (simclr_helpers.selfcheck): each item finds the mistake it names, and only that one."""
from __future__ import annotations

import json
import re

import nbformat
import pytest
from nbconvert.filters import strip_ansi

from autograder.course.examples import filled_release, solutions, with_cell_above
from autograder.course.variants import (AUGMENT_NO_JITTER, LOSS_NO_L2, LOSS_TAU_MULTIPLIED, LOSS_WITH_HELPER,
                                 POSITIVE_TARGETS, PROBE_TRAIN_MODE, TRAIN_LAST_LOSS, TRAIN_NO_ZERO_GRAD)
from simclr_helpers import checks, definitions, selfcheck


def _namespace(answers: dict[str, str]) -> dict:
    namespace = {"__name__": "__main__"}
    exec(definitions.NOTEBOOK_IMPORTS, namespace)
    for source in {**solutions(), **answers}.values():
        exec(source, namespace)
    return namespace


def _report(answers: dict[str, str], capsys) -> list[str]:
    selfcheck.self_check(_namespace(answers), notebook=None)
    return capsys.readouterr().out.splitlines()


def test_the_reference_passes_every_item(capsys):
    lines = _report({}, capsys)
    assert len(lines) == len(selfcheck.ITEMS) and all(line.startswith("ok") for line in lines), lines


@pytest.mark.parametrize("answers, component, concept", [
    ({"nt_xent": LOSS_NO_L2}, "nt_xent", "L2-normalise"),
    ({"get_augmentations": AUGMENT_NO_JITTER}, "get_augmentations", "ColorJitter"),
    ({"train_epoch": TRAIN_NO_ZERO_GRAD}, "train_epoch", "zero_grad"),
    ({"train_epoch": TRAIN_LAST_LOSS}, "train_epoch", "mean of the per-batch losses"),
    ({"linear_probe": PROBE_TRAIN_MODE}, "linear_probe", "encoder.eval()"),
])
def test_each_mistake_is_named_by_its_own_item_only(answers, component, concept, capsys):
    lines = _report(answers, capsys)
    problems = [line for line in lines if line.startswith("PROBLEM")]
    assert len(problems) == 1 and f"PROBLEM  {component}" in problems[0] and concept in problems[0], lines


def test_the_orthonormal_case_names_a_multiplied_temperature():
    with pytest.raises(AssertionError, match="multiplied by the temperature"):
        checks.check_nt_xent(_namespace({"nt_xent": LOSS_TAU_MULTIPLIED})["nt_xent"])


def _saved(tmp_path, nb: dict):
    notebook = tmp_path / "simclr_lab.ipynb"
    notebook.write_text(json.dumps(nb))
    return notebook


def test_a_helper_in_a_cell_of_its_own_is_taken_as_the_grader_takes_it(tmp_path):
    """The helper above the answer cell is defined (as a definition); a later cell redefining nt_xent is not."""
    nb = with_cell_above(filled_release({**solutions(), "nt_xent": LOSS_WITH_HELPER}), "nt_xent", POSITIVE_TARGETS)
    nb["cells"].append(nbformat.v4.new_code_cell("def nt_xent(z_i, z_j, temperature=0.5):\n    return z_i.sum()\n"))
    selfcheck.standalone(_saved(tmp_path, nb))


def test_a_helper_the_grader_does_not_run_is_named_with_its_cell_line_and_fix(tmp_path):
    """Set by a call (not a definition): the self-check names the statement, where it is and what to do, and
    blames only nt_xent (the grader checks train_epoch with the course's loss)."""
    helper = "def make_targets(n):\n    return torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])\n\n" \
             "TARGETS = make_targets(6)\n"
    loss = LOSS_WITH_HELPER.replace("positive_targets(len(z_i))", "TARGETS")
    nb = with_cell_above(filled_release({**solutions(), "nt_xent": loss}), "nt_xent", helper)
    with pytest.raises(AssertionError) as caught:
        selfcheck.standalone(_saved(tmp_path, nb))
    message = str(caught.value)
    assert "nt_xent: " in message and "train_epoch" not in message, message
    assert re.search(r"`TARGETS` is set by a statement the grader does not run.*cell \d+ \(`make_targets`\), "
                     r"line 4: `TARGETS = make_targets\(6\)`.*Make it a definition", message), message


def test_a_helper_no_cell_defines_is_named(tmp_path):
    helper_elsewhere = "def train_epoch(encoder, head, loader, optimizer, temperature=0.5, device='cpu', progress=True):\n" \
                       "    return my_training_loop(encoder, head, loader, optimizer, temperature)\n"
    nb = filled_release({**solutions(), "train_epoch": helper_elsewhere})
    with pytest.raises(AssertionError, match="train_epoch: .*no code cell defines `my_training_loop`"):
        selfcheck.standalone(_saved(tmp_path, nb))
    selfcheck.standalone(_saved(tmp_path, filled_release(solutions())))


def test_a_missing_saved_notebook_is_skipped_with_a_reason(tmp_path, capsys):
    assert selfcheck.self_check(_namespace({}), notebook=tmp_path / "absent.ipynb")
    assert "skipped  the answer cells on their own: " in capsys.readouterr().out


# --- nbgrader's Validate fails while the self-check finds a problem -------------------------------------------

# The cells a validation of the self-check needs: section 0 (setup, imports), the answer cells, the self-check.
VALIDATED_CELLS = ("cell-002", "cell-004", "cell-005", *checks.VISIBLE, "self-check")


def _validate(tmp_path, nb: dict) -> dict:
    """nbgrader's Validate on the notebook cut down to ``VALIDATED_CELLS`` (and the cells a test added)."""
    from nbgrader.validator import Validator
    from traitlets.config import Config
    nb["cells"] = [c for c in nb["cells"] if c.get("id") in VALIDATED_CELLS or "id" not in c
                   or not c["metadata"].get("nbgrader") and c["source"] == POSITIVE_TARGETS]
    config = Config()
    config.Execute.timeout = 600
    validator = Validator(config=config)
    verdict = validator.validate(str(_saved(tmp_path, nb)))
    for failure in verdict.get("failed", []):   # every line of the self-check's message is shown whole
        error = strip_ansi(failure["raw_error"])
        message = error[error.index("AssertionError: self-check"):].splitlines()
        assert all(len(validator.indent + line) <= validator.width - 3 for line in message), message
    return verdict


def test_validate_succeeds_when_the_self_check_finds_nothing(tmp_path):
    """The solutions, nt_xent with its helper in a cell of the student's own above it."""
    nb = with_cell_above(filled_release({**solutions(), "nt_xent": LOSS_WITH_HELPER}), "nt_xent", POSITIVE_TARGETS)
    assert _validate(tmp_path, nb) == {}


@pytest.mark.parametrize("answers, concept", [
    ({"nt_xent": LOSS_NO_L2}, "L2-normalise"),
    ({"train_epoch": TRAIN_NO_ZERO_GRAD}, "zero_grad"),
    ({"linear_probe": PROBE_TRAIN_MODE}, "encoder.eval()"),
], ids=["no_l2", "no_zero_grad", "probe_without_eval"])
def test_validate_fails_with_the_self_checks_message(tmp_path, answers, concept):
    verdict = _validate(tmp_path, filled_release({**solutions(), **answers}))
    assert [f["source"].splitlines()[-1] for f in verdict.get("failed", [])] == [
        "lab.self_check(globals(), strict=True)"], verdict
    error = " ".join(strip_ansi(verdict["failed"][0]["raw_error"]).split())
    assert "self-check: 1 problem, listed below: fix before you submit" in error and concept in error, error


def test_the_grader_never_runs_the_self_check_and_says_so(tmp_path):
    """Autograde gives the 0-point self-check cell a note, not a NotGraded error, and no point is at stake."""
    from nbgrader import utils as nbgrader_utils

    from autograder.checks.grading import answer_cells, digest
    from autograder.nbgrader_ext.plugin import TrustedChecks
    from autograder.checks.registry import GRADE_IDS, NOT_GRADED
    nb = nbformat.reads(json.dumps(filled_release(solutions())), as_version=4)
    verdicts = {g: {"grade_id": g, "passed": True, "message": "passed", "seconds": 0.0} for g in GRADE_IDS}
    (tmp_path / "s.json").write_text(json.dumps({"digest": digest(answer_cells(nb)), "results": verdicts}))
    graded, _ = TrustedChecks(results_directory=str(tmp_path)).preprocess(nb, {"nbgrader": {"student": "s"}})
    cell = next(c for c in graded.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "self_check")
    assert [o.output_type for o in cell.outputs] == ["stream"] and NOT_GRADED["self_check"] in cell.outputs[0].text
    assert nbgrader_utils.determine_grade(cell) == (0, 0)
