"""The notebook's self-check (simclr_helpers.selfcheck): each item finds the mistake it names, and only that one."""
from __future__ import annotations

import json

import pytest

from autograder.examples import filled_release, solutions
from autograder.variants import (AUGMENT_NO_JITTER, LOSS_NO_L2, LOSS_TAU_MULTIPLIED, PROBE_TRAIN_MODE,
                                 TRAIN_LAST_LOSS, TRAIN_NO_ZERO_GRAD)
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


def test_answer_cells_that_need_another_cell_fail_on_their_own(tmp_path):
    helper_elsewhere = "def train_epoch(encoder, head, loader, optimizer, temperature=0.5, device='cpu', progress=True):\n" \
                       "    return my_training_loop(encoder, head, loader, optimizer, temperature)\n"
    nb = filled_release({**solutions(), "train_epoch": helper_elsewhere})
    notebook = tmp_path / "simclr_lab.ipynb"
    notebook.write_text(json.dumps(nb))
    with pytest.raises(AssertionError, match="train_epoch: .*my_training_loop"):
        selfcheck.standalone(notebook)
    notebook.write_text(json.dumps(filled_release(solutions())))
    selfcheck.standalone(notebook)


def test_a_missing_saved_notebook_is_skipped_with_a_reason(tmp_path, capsys):
    assert selfcheck.self_check(_namespace({}), notebook=tmp_path / "absent.ipynb")
    assert "skipped  the answer cells on their own: " in capsys.readouterr().out
