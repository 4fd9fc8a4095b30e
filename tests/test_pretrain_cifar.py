"""The main job on real CIFAR-10: a short SimCLR run must beat the random-initialised encoder's probe."""
import json
from pathlib import Path

import pytest

from reference.pretrain import PretrainConfig, run

MEASUREMENTS = Path(__file__).resolve().parent.parent / "reference" / "measurements"
# Margin over the random-init probe, in accuracy points. Measured with the default config on seeds 0-2
# (reference/measurements/pretrain_cpu_seed*.json): see docs/benchmark.md.
MIN_MARGIN = 0.03


@pytest.mark.slow
def test_short_pretraining_beats_random_init(cifar_dir):
    result = run(PretrainConfig(data_dir=str(cifar_dir), seed=0), progress=False)
    print(f"probe: SimCLR {result.probe_accuracy:.4f}, random init {result.random_init_probe_accuracy:.4f}, "
          f"losses {[round(x, 3) for x in result.losses]}, {result.train_seconds:.0f} s training")
    assert result.losses[-1] < result.losses[0] - 0.5, "the SimCLR loss barely moved"
    assert result.probe_accuracy >= result.random_init_probe_accuracy + MIN_MARGIN


def test_recorded_runs_support_the_margin():
    """The committed seed runs are what the margin rests on: each must clear it."""
    records = [json.loads(p.read_text()) for p in sorted(MEASUREMENTS.glob("pretrain_cpu_seed*.json"))]
    assert len(records) >= 3, "measure the margin on at least three seeds"
    defaults = PretrainConfig().__dict__
    for record in records:
        changed = {k for k, v in defaults.items() if k not in ("seed", "data_dir") and record["config"][k] != v}
        assert not changed, f"the defaults changed since the measurement ({changed}): measure again"
        assert record["probe_accuracy"] - record["random_init_probe_accuracy"] >= MIN_MARGIN


def test_command_line_writes_a_record(cifar_dir, tmp_path, capsys):
    """The main job's CLI on a tiny budget: arguments reach the run and the JSON record holds the result."""
    from reference.pretrain import main
    out = tmp_path / "run.json"
    main(["--data-dir", str(cifar_dir), "--fraction", "0.01", "--probe-fraction", "0.02", "--epochs", "1",
          "--batch-size", "64", "--workers", "0", "--json", str(out)])
    record = json.loads(out.read_text())
    assert record["config"]["fraction"] == 0.01 and record["config"]["epochs"] == 1 and len(record["losses"]) == 1
    assert 0.0 <= record["random_init_probe_accuracy"] <= 1.0 and 0.0 <= record["probe_accuracy"] <= 1.0
    assert record["versions"]["torch"] and record["device"] == "cpu"
    assert "linear probe, random-init encoder" in capsys.readouterr().out
