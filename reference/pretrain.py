"""Short SimCLR pretraining on a CIFAR-10 subset, then a linear probe next to a random-initialised encoder.

    python -m reference.pretrain                 # CPU defaults: small CNN, 10 % of CIFAR-10, 8 epochs
    python -m reference.pretrain --encoder resnet18 --fraction 1.0 --epochs 100 --batch-size 512
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field

import torch

from simclr_helpers import (balanced_subset, build_encoder, eval_loader, get_eval_transform, load_cifar10,
                            pair_loader, pick_device, pretrain)

from .augment import get_augmentations
from .evaluate import linear_probe
from .model import ProjectionHead
from .train import train_epoch


@dataclass
class PretrainConfig:
    """Everything that decides a run's result; the defaults are the CPU run measured in docs/benchmark.md."""
    encoder: str = "small_cnn"
    fraction: float = 0.1          # class-balanced share of the training set used for pretraining (seed 003)
    probe_fraction: float = 0.2    # share of the training set the linear probe is trained on
    epochs: int = 8
    batch_size: int = 128
    lr: float = 2e-3
    temperature: float = 0.2
    seed: int = 0
    workers: int = 2
    data_dir: str | None = None
    download: bool = False


@dataclass
class PretrainResult:
    config: dict
    losses: list[float]
    probe_accuracy: float
    random_init_probe_accuracy: float
    train_seconds: float
    total_seconds: float
    device: str
    versions: dict = field(default_factory=dict)


def run(config: PretrainConfig, progress: bool = True) -> PretrainResult:
    """Pretrain f and g with SimCLR, then probe f and an untrained copy of f made from the same seed."""
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    device = pick_device()
    data = dict(root=config.data_dir, download=config.download)
    pretrain_set = balanced_subset(load_cifar10(train=True, **data), config.fraction, seed=config.seed)
    pairs = pair_loader(pretrain_set, get_augmentations(), config.batch_size, config.workers, config.seed)
    eval_transform = get_eval_transform()
    probe_train = eval_loader(balanced_subset(load_cifar10(train=True, transform=eval_transform, **data),
                                              config.probe_fraction, seed=config.seed + 1))
    probe_test = eval_loader(load_cifar10(train=False, transform=eval_transform, **data))

    encoder = build_encoder(config.encoder).to(device)
    random_encoder = copy.deepcopy(encoder)
    head = ProjectionHead(encoder.out_dim, encoder.out_dim, 128).to(device)
    train_start = time.perf_counter()
    losses = pretrain(encoder, head, pairs, train_epoch, config.epochs, config.lr, config.temperature, device,
                      progress)
    train_seconds = time.perf_counter() - train_start

    probe = dict(device=device, seed=config.seed)
    return PretrainResult(
        config=asdict(config), losses=losses,
        probe_accuracy=linear_probe(encoder, probe_train, probe_test, **probe),
        random_init_probe_accuracy=linear_probe(random_encoder, probe_train, probe_test, **probe),
        train_seconds=train_seconds, total_seconds=time.perf_counter() - start, device=str(device),
        versions=dict(python=platform.python_version(), torch=torch.__version__, threads=torch.get_num_threads(),
                      cpu_count=os.cpu_count(), machine=platform.machine()))


def main(argv: list[str] | None = None) -> PretrainResult:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = PretrainConfig()
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true", help=f"default {value}")
        else:
            parser.add_argument(flag, type=type(value) if value is not None else str, default=value,
                                help=f"default {value}")
    parser.add_argument("--json", help="also write the result as JSON to this file")
    args = vars(parser.parse_args(argv))
    json_path = args.pop("json")
    result = run(PretrainConfig(**args))
    print(f"\nSimCLR ({result.config['encoder']}, {result.config['epochs']} epochs on "
          f"{result.config['fraction']:.0%} of CIFAR-10, {result.train_seconds:.0f} s training on {result.device})")
    print(f"  linear probe, SimCLR encoder:       {result.probe_accuracy:.2%}")
    print(f"  linear probe, random-init encoder:  {result.random_init_probe_accuracy:.2%}")
    print(f"  total time {result.total_seconds:.0f} s")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(asdict(result), f, indent=2)
    return result


if __name__ == "__main__":
    main()
