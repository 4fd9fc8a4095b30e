"""``python -m autograder.calibrate``: the pass mark comes from the correct variants' runs, below all of them."""
import json

import pytest

from autograder import calibrate
from autograder.course import variants
from autograder.calibrate import Run, suggest

# A CPU budget of seconds per run: 1 % of the training set for one epoch, a small probe.
TINY = {"epochs": 1, "pretrain_fraction": 0.01, "probe_fraction": 0.01, "test_fraction": 0.05, "probe_epochs": 5}


def _runs(kind: str, name: str, *accuracies) -> list[Run]:
    return [Run(name, kind, seed, a, 1.0) for seed, a in enumerate(accuracies)]


def test_the_mark_comes_from_the_lowest_correct_run_and_separates_only_runs_all_below_it():
    runs = (_runs("correct", "reference", 0.60, 0.52) + _runs("correct", "other", 0.55)
            + _runs("broken", "far_below", 0.20, None) + _runs("broken", "one_above", 0.30, 0.51)
            + _runs("broken", "just_below", 0.499))
    result = suggest(runs, margin=0.02)
    assert result["lowest_correct_accuracy"] == 0.52
    assert result["suggested_min_probe_accuracy"] == 0.5
    assert result["separated"] == {"far_below": True, "one_above": False, "just_below": True}
    assert result["not_separated"] == ["one_above"]
    assert suggest(runs, margin=0.025)["suggested_min_probe_accuracy"] == 0.495  # rounded down, never up


def test_no_mark_when_a_correct_variant_fails_to_train():
    runs = _runs("correct", "reference", 0.6) + _runs("correct", "crashes", None) + _runs("broken", "b", 0.1)
    result = suggest(runs, margin=0.02)
    assert result["suggested_min_probe_accuracy"] is None and result["failed_correct_variants"] == ["crashes"]
    assert result["separated"] == {"b": None} and result["not_separated"] == []


def test_the_corpus_grades_every_variant_the_calibration_trains():
    """Same name, same description, same answer cells: a calibrated mistake is also a graded one."""
    import corpus
    submissions = {s.name: s for s in corpus.CORPUS}
    for name, changes in variants.CORRECT.items():
        assert submissions[name].cells == changes, name
    for name, (what, changes) in variants.BROKEN.items():
        assert (submissions[name].what, submissions[name].cells) == (what, changes), name


def test_a_missing_device_is_refused(capsys):
    with pytest.raises(SystemExit):
        calibrate.main(["--device", "cuda-that-is-not-here"])
    assert "calibrate on the grading machine" in capsys.readouterr().err


def test_calibrate_command_on_a_tiny_cpu_budget(cifar_dir, tmp_path, capsys):
    out = tmp_path / "cpu.json"
    status = calibrate.main(["--device", "cpu", "--preset", "grading", "--overrides", json.dumps(TINY),
                             "--variants", "reference", "correct_loss_logsumexp", "head_no_relu",
                             "--seeds-correct", "2", "--seeds-broken", "1", "--margin", "0.02", "--out", str(out)])
    printed = capsys.readouterr().out
    record = json.loads(out.read_text())
    assert status == 0
    assert {"python", "torch", "torchvision", "nbgrader", "platform", "device_name"} <= set(record["environment"])
    assert record["budget"]["epochs"] == 1 and record["budget"]["encoder"] == "small_cnn"
    assert [(r["variant"], r["seed"]) for r in record["runs"]] == [
        ("reference", 0), ("reference", 1), ("correct_loss_logsumexp", 0), ("correct_loss_logsumexp", 1),
        ("head_no_relu", 0)]
    assert all(0 < r["accuracy"] <= 1 and r["seconds"] > 0 and not r["error"] for r in record["runs"])

    correct = [r["accuracy"] for r in record["runs"] if r["kind"] == "correct"]
    mark = record["suggested_min_probe_accuracy"]
    assert all(mark <= a - 0.02 + 1e-9 for a in correct)
    assert mark > min(correct) - 0.02 - 0.001  # from the lowest correct run, not from every run
    broken = [r["accuracy"] for r in record["runs"] if r["kind"] == "broken"]
    assert record["separated"] == {"head_no_relu": all(a < mark for a in broken)}
    assert record["variants"]["head_no_relu"] == {"kind": "broken", "description": "no ReLU: the head is linear",
                                                  "accuracies": broken, "min": min(broken), "max": max(broken)}
    assert f"c.TrainingRun.min_probe_accuracy = {mark}" in printed
    assert ("NOT separated" in printed) == (not record["separated"]["head_no_relu"])
