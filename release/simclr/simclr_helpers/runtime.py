"""Where the lab runs: compute presets, the device, seeds, a timer, and a guard for unfinished stubs."""
from __future__ import annotations

import os
import platform
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import torch


@dataclass(frozen=True)
class Preset:
    """How much compute each stage of the lab gets."""
    name: str
    encoder: str               # "resnet18" or "small_cnn"
    pretrain_fraction: float   # class-balanced share of the CIFAR-10 training set used for SimCLR
    epochs: int
    batch_size: int
    lr: float
    temperature: float
    probe_fraction: float      # share of the training set the linear probe learns from
    test_fraction: float       # share of the test set every evaluation uses
    probe_epochs: int
    tsne_points: int
    experiment_epochs: int     # epochs of each exercise run (0: the exercise runs are skipped)
    experiment_fraction: float
    workers: int


PRESETS = {
    # Colab's T4: ResNet-18, the encoder of the SimCLR paper, on 10 % of CIFAR-10 (as in seed 003).
    "gpu": Preset("gpu", "resnet18", pretrain_fraction=0.1, epochs=30, batch_size=256, lr=1e-3, temperature=0.2,
                  probe_fraction=0.2, test_fraction=1.0, probe_epochs=30, tsne_points=2000,
                  experiment_epochs=10, experiment_fraction=0.1, workers=2),
    # A laptop without a GPU: the small CNN, measured in docs/benchmark.md (about 2.5 min of training on 2 cores).
    "cpu": Preset("cpu", "small_cnn", pretrain_fraction=0.1, epochs=8, batch_size=128, lr=2e-3, temperature=0.2,
                  probe_fraction=0.2, test_fraction=1.0, probe_epochs=30, tsne_points=1000,
                  experiment_epochs=3, experiment_fraction=0.05, workers=2),
    # nbgrader executing a submission: every cell runs, on little data, so a class can be graded quickly.
    "grading": Preset("grading", "small_cnn", pretrain_fraction=0.02, epochs=2, batch_size=128, lr=2e-3,
                      temperature=0.2, probe_fraction=0.04, test_fraction=0.2, probe_epochs=20, tsne_points=300,
                      experiment_epochs=0, experiment_fraction=0.02, workers=0),
}


def pick_device() -> torch.device:
    """cuda, then Apple's mps, then cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def choose_preset(name: str = "auto") -> Preset:
    """The preset called ``name``. ``"auto"``: ``$SIMCLR_PRESET`` if set, else "grading" under nbgrader
    (which sets ``NBGRADER_EXECUTION``), else "gpu" or "cpu" by the device found."""
    if name == "auto":
        name = os.environ.get("SIMCLR_PRESET") or "auto"
    if name == "auto":
        if os.environ.get("NBGRADER_EXECUTION"):
            name = "grading"
        else:
            name = "cpu" if pick_device().type == "cpu" else "gpu"
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {sorted(PRESETS)} or 'auto'")
    preset = PRESETS[name]
    if preset.workers and platform.system() != "Linux":
        # DataLoader workers are started with spawn outside Linux, which is slow to start in a notebook.
        preset = replace(preset, workers=0)
    return preset


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch so a re-run gives the same numbers on the same machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def describe_environment(device: torch.device) -> str:
    """One line with the versions and hardware, to print next to results."""
    import torchvision
    gpu = f", {torch.cuda.get_device_name(0)}" if device.type == "cuda" else ""
    return (f"Python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
            f"device {device}{gpu}, {os.cpu_count()} CPU cores")


class Timer:
    """Wall-clock seconds of named stages: ``with timer("training"): ...``; ``timer.report()`` lists them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def report(self) -> str:
        return "\n".join(f"{name:<28s}{s:8.1f} s" for name, s in self.seconds.items())


@contextmanager
def needs(*stubs: str) -> Iterator[None]:
    """Run a cell that uses the named stubs; if one is not written yet, say so instead of failing.

    Only ``NotImplementedError`` (the stub's placeholder) is caught: any other error in your code
    still shows its traceback, so you can fix it.
    """
    try:
        yield
    except NotImplementedError:
        print(f"Skipped: this cell needs {', '.join(stubs)}. Write it above, run its cell, then run this cell "
              "again.", file=sys.stdout)
