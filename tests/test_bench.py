"""The benchmark command on a tiny CPU budget, and its FLOP count; GPU-only parts are skipped on CPU."""
import json

import pytest
import torch

from bench import run as bench
from reference import ProjectionHead
from simclr_helpers import build_encoder

TINY = ["--encoder", "small_cnn", "--fraction", "0.02", "--probe-fraction", "0.02", "--test-fraction", "0.1",
        "--batch-size", "64", "--checkpoints", "2", "--probe-epochs", "5"]


@pytest.mark.parametrize("augment", ["gpu", "cpu"])
def test_tiny_budget_writes_record_and_plot(cifar_dir, tmp_path, augment):
    record = bench.main(TINY + ["--data-dir", str(cifar_dir), "--augment", augment, "--workers", "0",
                                "--budget-s", "3", "--seeds", "0", "1", "--out-dir", str(tmp_path), "--name", "tiny"])
    saved = json.loads((tmp_path / "tiny.json").read_text())
    assert saved["summary"] == record["summary"] and (tmp_path / "tiny.png").stat().st_size > 10_000
    assert saved["environment"]["torch"] == torch.__version__ and saved["seeds"] == [0, 1]
    for run in saved["runs"]:
        assert [c["train_seconds"] >= 0 for c in run["checkpoints"]] == [True] * 3, "random init + 2 checkpoints"
        assert run["checkpoints"][0]["train_seconds"] == 0 and run["checkpoints"][-1]["train_seconds"] >= 3
        assert all(0 <= c["probe"] <= 1 and 0 <= c["knn"] <= 1 for c in run["checkpoints"])
        assert run["augment_seconds"] + run["model_seconds"] == pytest.approx(run["train_seconds"])
        assert run["images"] == 64 * run["steps"]
    summary = saved["summary"]
    assert summary["peak_tflops"] is None and 0 < summary["augment_share"] < 1 and summary["achieved_tflops"] > 0


def test_epoch_limit_stops_at_equal_epochs(cifar_dir, tmp_path):
    record = bench.main(TINY + ["--data-dir", str(cifar_dir), "--epochs", "1", "--budget-s", "1000",
                                "--out-dir", str(tmp_path)])
    final = record["runs"][0]["checkpoints"][-1]
    assert 1.0 <= final["epochs"] < 1.2, "an epoch-limited run stops right after the last epoch"


def test_flop_count_of_resnet18_matches_the_analytical_estimate():
    """About 6.7 GFLOP per image for a SimCLR step of CIFAR ResNet-18 (two views, forward and backward)."""
    encoder = build_encoder("resnet18")
    flops = bench.flops_per_image(encoder, ProjectionHead(512, 512, 128), bench.BenchConfig(batch_size=4),
                                  torch.device("cpu"))
    assert 6.5e9 < flops < 6.9e9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: bf16 autocast, fused Adam, peak TFLOP/s")
def test_gpu_fast_path(cifar_dir, tmp_path):
    record = bench.main(["--encoder", "resnet18", "--budget-s", "5", "--checkpoints", "1", "--probe-epochs", "5",
                         "--data-dir", str(cifar_dir), "--out-dir", str(tmp_path)])
    assert record["environment"]["device"].startswith("cuda") and record["summary"]["achieved_tflops"] > 1
