"""SimCLR on CIFAR-10 against the wall clock: train the reference for a time budget, evaluate at checkpoints.

    python -m bench.run --budget-s 60 --seeds 0 1 2                     # GPU: ResNet-18, on-device augmentation
    python -m bench.run --augment cpu --workers 2 --budget-s 60         # the same with torchvision in 2 workers
    python -m bench.run --encoder small_cnn --budget-s 60 --fraction 0.1 --batch-size 128   # a CPU run

Writes ``bench/records/<name>.json`` (device, versions, throughput, achieved TFLOP/s next to the device's
peak, augmentation time against model time, linear-probe and kNN accuracy at checkpoints, the random-init
encoder's accuracy, per seed) and ``<name>.png`` (accuracy against training seconds). Evaluation time is not
counted in the budget.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from reference import ProjectionHead, get_augmentations, linear_probe, nt_xent
from simclr_helpers import (CIFAR10_MEAN, CIFAR10_STD, DevicePairLoader, balanced_subset, build_encoder,
                            images_as_tensor, knn_accuracy, load_cifar10, pair_loader, pick_device)

RECORDS = Path(__file__).resolve().parent / "records"
# Dense bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s (fp16 for the T4).
PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "T4": 65.0}


@dataclass
class BenchConfig:
    budget_s: float = 60.0
    epochs: float = 0.0            # > 0: stop after this many epochs instead of the time budget (equal-epoch runs)
    encoder: str = "resnet18"
    augment: str = "gpu"           # "gpu": batched on the training device; "cpu": torchvision in DataLoader workers
    batch_size: int = 512
    lr: float = 2e-3
    temperature: float = 0.2
    fraction: float = 1.0          # share of the training set used for SimCLR
    probe_fraction: float = 1.0    # share of the training set the probe and kNN learn from
    test_fraction: float = 1.0     # share of the test set they are evaluated on
    checkpoints: int = 4           # evaluations spread evenly over the budget (plus one at 0 s: random init)
    probe_epochs: int = 30
    workers: int = 2
    amp: bool = True               # bf16 autocast on CUDA
    channels_last: bool = True
    compile: bool = False
    data_dir: str | None = None


@dataclass
class SeedRun:
    seed: int
    checkpoints: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    augment_seconds: float = 0.0
    model_seconds: float = 0.0
    steps: int = 0
    images: int = 0


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR10_MEAN, device=images.device)[:, None, None]
    std = torch.tensor(CIFAR10_STD, device=images.device)[:, None, None]
    return (images.float() / 255 - mean) / std


class Evaluator:
    """Probe and kNN of an encoder on fixed, preloaded images (features computed in eval mode)."""

    def __init__(self, config: BenchConfig, seed: int, device: torch.device) -> None:
        data = dict(root=config.data_dir)
        probe_set = balanced_subset(load_cifar10(train=True, **data), config.probe_fraction, seed=seed + 1)
        test_set = balanced_subset(load_cifar10(train=False, **data), config.test_fraction, seed=seed + 2)
        (self.train_x, self.train_y), (self.test_x, self.test_y) = images_as_tensor(probe_set), images_as_tensor(test_set)
        self.train_x, self.test_x = self.train_x.to(device), self.test_x.to(device)
        self.config, self.device = config, device

    @torch.no_grad()
    def features(self, encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
        was_training = encoder.training
        encoder.eval()
        out = []
        for batch in images.split(1024):
            with _autocast(self.config, self.device):
                out.append(encoder(_layout(_normalise(batch), self.config)).float().cpu())
        encoder.train(was_training)
        return torch.cat(out)

    def __call__(self, encoder: nn.Module, seed: int) -> dict:
        start = time.perf_counter()
        train_h, test_h = self.features(encoder, self.train_x), self.features(encoder, self.test_x)
        probe = linear_probe(nn.Identity(), [(train_h, self.train_y)], [(test_h, self.test_y)],
                             epochs=self.config.probe_epochs, seed=seed)
        knn = knn_accuracy(train_h, self.train_y, test_h, self.test_y)
        return dict(probe=probe, knn=knn, eval_seconds=time.perf_counter() - start)


def _autocast(config: BenchConfig, device: torch.device):
    if config.amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _layout(x: torch.Tensor, config: BenchConfig) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if config.channels_last else x


def _batches(config: BenchConfig, train_set, seed: int, device: torch.device):
    """Endless ((view_1, view_2), seconds spent producing them) for the chosen augmentation path."""
    if config.augment == "gpu":
        loader = DevicePairLoader(train_set, get_augmentations(), config.batch_size, device, seed)
    elif config.augment == "cpu":
        loader = pair_loader(train_set, get_augmentations(), config.batch_size, config.workers, seed)
    else:
        raise ValueError(f"unknown augmentation path {config.augment!r}: use 'gpu' or 'cpu'")
    while True:
        iterator = iter(loader)
        while True:
            start = time.perf_counter()
            try:
                (x_i, x_j), _ = next(iterator)
            except StopIteration:
                break
            views = x_i.to(device, non_blocking=True), x_j.to(device, non_blocking=True)
            _sync(device)
            yield views, time.perf_counter() - start


def flops_per_image(encoder: nn.Module, head: nn.Module, config: BenchConfig, device: torch.device) -> float:
    """Forward + backward FLOPs of one training step (both views), per image, counted on copies."""
    encoder, head = copy.deepcopy(encoder), copy.deepcopy(head)
    x = torch.randn(2 * config.batch_size, 3, 32, 32, device=device)
    with FlopCounterMode(display=False) as counter:
        with _autocast(config, device):
            z = head(encoder(_layout(x, config)))
        nt_xent(*z.float().chunk(2), config.temperature).backward()
    return counter.get_total_flops() / config.batch_size


def run_seed(config: BenchConfig, seed: int, evaluate: Evaluator, device: torch.device) -> tuple[SeedRun, float]:
    torch.manual_seed(seed)
    train_set = balanced_subset(load_cifar10(train=True, root=config.data_dir), config.fraction, seed=seed)
    encoder = build_encoder(config.encoder).to(device)
    head = ProjectionHead(encoder.out_dim, encoder.out_dim, 128).to(device)
    if config.channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
    flops = flops_per_image(encoder, head, config, device)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=1e-6, fused=device.type == "cuda")
    model = torch.compile(nn.Sequential(encoder, head)) if config.compile else nn.Sequential(encoder, head)

    run = SeedRun(seed=seed)
    run.checkpoints.append(dict(train_seconds=0.0, epochs=0.0, loss=None, **evaluate(encoder, seed)))
    targets = [(k + 1) / config.checkpoints for k in range(config.checkpoints)]  # shares of the budget
    losses = []
    for (x_i, x_j), augment_seconds in _batches(config, train_set, seed, device):
        start = time.perf_counter()
        with _autocast(config, device):
            z = model(_layout(torch.cat([x_i, x_j]), config))
        loss = nt_xent(*z.float().chunk(2), config.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        _sync(device)
        model_seconds = time.perf_counter() - start
        run.augment_seconds += augment_seconds
        run.model_seconds += model_seconds
        run.train_seconds += augment_seconds + model_seconds
        run.steps += 1
        run.images += len(x_i)
        done = run.images / len(train_set) / config.epochs if config.epochs else run.train_seconds / config.budget_s
        if done >= targets[len(run.checkpoints) - 1]:
            mean_loss = torch.stack(losses).mean().item()
            losses = []
            run.checkpoints.append(dict(train_seconds=run.train_seconds, epochs=run.images / len(train_set),
                                        loss=mean_loss, **evaluate(encoder, seed)))
            if len(run.checkpoints) > config.checkpoints:
                break
    return run, flops


def summarise(config: BenchConfig, runs: list[SeedRun], flops: float, device: torch.device) -> dict:
    train_s = sum(r.train_seconds for r in runs)
    images = sum(r.images for r in runs)
    achieved = flops * images / max(train_s, 1e-9) / 1e12
    peak = peak_tflops(device)
    finals = [r.checkpoints[-1] for r in runs]
    return dict(
        images_per_second=images / max(train_s, 1e-9),
        gflop_per_image=flops / 1e9,
        achieved_tflops=achieved,
        peak_tflops=peak,
        share_of_peak=None if peak is None else achieved / peak,
        augment_share=sum(r.augment_seconds for r in runs) / max(train_s, 1e-9),
        final_probe_mean=statistics.mean(f["probe"] for f in finals),
        final_probe_sd=statistics.stdev(f["probe"] for f in finals) if len(finals) > 1 else 0.0,
        final_knn_mean=statistics.mean(f["knn"] for f in finals),
        random_init_probe_mean=statistics.mean(r.checkpoints[0]["probe"] for r in runs),
        epochs_mean=statistics.mean(f["epochs"] for f in finals),
    )


def environment(device: torch.device) -> dict:
    return dict(python=platform.python_version(), torch=torch.__version__, torchvision=torchvision.__version__,
                cuda=torch.version.cuda, device=str(device),
                device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
                or platform.machine(), cpu_count=os.cpu_count(), threads=torch.get_num_threads())


def plot(record: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for run in record["runs"]:
        seconds = [c["train_seconds"] for c in run["checkpoints"]]
        ax.plot(seconds, [100 * c["probe"] for c in run["checkpoints"]], "o-", color="tab:blue", alpha=0.7,
                label="linear probe" if run is record["runs"][0] else None)
        ax.plot(seconds, [100 * c["knn"] for c in run["checkpoints"]], "s--", color="tab:orange", alpha=0.7,
                label="kNN (k=200)" if run is record["runs"][0] else None)
    env, cfg = record["environment"], record["config"]
    augmentation = {"gpu": "batched augmentation on the device", "cpu": "torchvision augmentation in workers"}
    ax.set(xlabel="training seconds", ylabel="CIFAR-10 test accuracy (%)",
           title=f"{cfg['encoder']}, {augmentation[cfg['augment']]}, {env['device_name']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in asdict(BenchConfig()).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value) if value is not None else str, default=value)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--name", help="record name (default: derived from device, encoder, augmentation, budget)")
    parser.add_argument("--out-dir", type=Path, default=RECORDS)
    args = vars(parser.parse_args(argv))
    seeds, name, out_dir = args.pop("seeds"), args.pop("name"), args.pop("out_dir")
    config = BenchConfig(**args)
    device = pick_device()
    runs, flops = [], 0.0
    for seed in seeds:
        run, flops = run_seed(config, seed, Evaluator(config, seed, device), device)
        runs.append(run)
        final = run.checkpoints[-1]
        print(f"seed {seed}: {run.train_seconds:.0f} s, {final['epochs']:.1f} epochs, probe {final['probe']:.2%}, "
              f"kNN {final['knn']:.2%} (random init: probe {run.checkpoints[0]['probe']:.2%})", flush=True)
    record = dict(config=asdict(config), seeds=seeds, environment=environment(device),
                  summary=summarise(config, runs, flops, device), runs=[asdict(r) for r in runs])
    length = f"{config.epochs:g}ep" if config.epochs else f"{config.budget_s:g}s"
    name = name or f"{device.type}-{config.encoder}-{config.augment}-{length}"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    plot(record, out_dir / f"{name}.png")
    s = record["summary"]
    peak = "" if s["peak_tflops"] is None else f" of {s['peak_tflops']:.0f} peak"
    print(f"{name}: {s['images_per_second']:.0f} images/s, {s['achieved_tflops']:.3f} TFLOP/s{peak}, augmentation "
          f"{s['augment_share']:.0%} of training time; probe {s['final_probe_mean']:.2%} +- {s['final_probe_sd']:.2%}")
    return record


if __name__ == "__main__":
    main()
