"""Data loaders and training loops around the student's components, for the lab's runs and exercises."""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms
from tqdm.std import TqdmExperimentalWarning

with warnings.catch_warnings():   # tqdm.auto's choice of bar, without its asyncio part: see progress_bar
    warnings.simplefilter("ignore", TqdmExperimentalWarning)
    from tqdm.autonotebook import tqdm

from .data import (CIFAR10_MEAN, CIFAR10_STD, TwoViewDataset, balanced_subset, dataset_targets, get_eval_transform,
                   images_as_tensor, load_cifar10, offline_copy_available)
from .batch_augment import BatchAugment
from .encoders import build_encoder
from .evaluate import extract_features, knn_accuracy
from .progress import Progress, duration
from .runtime import Preset


@dataclass
class LabData:
    """The CIFAR-10 splits one lab run uses."""
    train: Dataset        # the whole training split, items (PIL image, label)
    test: Dataset         # the test split, items (PIL image, label)
    pretrain: Subset      # the preset's class-balanced share of ``train`` for SimCLR (labels unused)
    labelled: Subset      # the labelled training images: the probe's (and the supervised baseline's), items (PIL, label)
    probe_train: DataLoader  # ``labelled`` with the evaluation transform, for the linear probe and kNN
    probe_test: DataLoader

    @property
    def evaluation_batches(self) -> int:
        """Batches in one pass over the probe's training and test loaders (one encoder's features)."""
        return len(self.probe_train) + len(self.probe_test)


def load_lab_data(preset: Preset, seed: int = 0, root: str | None = None) -> LabData:
    """CIFAR-10 for ``preset``: the offline ImageFolder copy when one is found, else torchvision's download."""
    download = root is None and not offline_copy_available()
    train = load_cifar10(train=True, root=root or ("data" if download else None), download=download)
    test = load_cifar10(train=False, root=root or ("data" if download else None), download=download)
    evaluation = get_eval_transform()
    labelled = balanced_subset(train, preset.probe_fraction, seed=seed + 1)
    probe_train = Subset(_with_transform(train, evaluation), labelled.indices)
    probe_test = balanced_subset(_with_transform(test, evaluation), preset.test_fraction, seed=seed + 2)
    return LabData(train=train, test=test, pretrain=balanced_subset(train, preset.pretrain_fraction, seed=seed),
                   labelled=labelled, probe_train=eval_loader(probe_train), probe_test=eval_loader(probe_test))


class _Transformed(Dataset):
    def __init__(self, base: Dataset, transform: Callable) -> None:
        self.base, self.transform, self.targets = base, transform, dataset_targets(base)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return self.transform(image), label


def _with_transform(dataset: Dataset, transform: Callable) -> Dataset:
    return _Transformed(dataset, transform)


def pair_loader(dataset: Dataset, augment: Callable, batch_size: int, workers: int = 0, seed: int = 0) -> DataLoader:
    """Batches ``((x_i, x_j), labels)`` of two independent views of each image, shuffled with a fixed seed."""
    return DataLoader(TwoViewDataset(dataset, augment), batch_size=batch_size, shuffle=True, drop_last=True,
                      num_workers=workers, persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(seed))


class DevicePairLoader:
    """The fast path of ``pair_loader``: the images wait on ``device`` as uint8 and every batch's two views are
    drawn there by ``BatchAugment.from_pipeline(augment)``. Yields ``((x_i, x_j), labels)`` like
    ``pair_loader`` (shuffled with a fixed seed, last partial batch dropped), so ``train_epoch`` is unchanged."""

    def __init__(self, dataset: Dataset, augment: transforms.Compose, batch_size: int,
                 device: torch.device | str, seed: int = 0) -> None:
        images, self.labels = images_as_tensor(dataset)
        self.images = images.to(device)
        self.augment = BatchAugment.from_pipeline(augment)
        self.batch_size = batch_size
        self.generator = torch.Generator(device=self.images.device).manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.images), device=self.images.device, generator=self.generator)
        for batch in order[:len(self) * self.batch_size].split(self.batch_size):
            images = self.images[batch]
            views = self.augment(images, self.generator), self.augment(images, self.generator)
            yield views, self.labels[batch.cpu()]


def eval_loader(dataset: Dataset, batch_size: int = 512) -> DataLoader:
    """Batches ``(images, labels)`` in a fixed order, for feature extraction."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


def pretrain(encoder: nn.Module, head: nn.Module, loader: DataLoader, train_epoch: Callable, epochs: int,
             lr: float, temperature: float, device: torch.device | str, progress: bool = True,
             bar: Progress | None = None) -> list[float]:
    """SimCLR pretraining: Adam on encoder and head, ``train_epoch`` once per epoch; returns the epoch losses.

    With ``progress``, a bar over all epochs' batches shows the time left, each epoch prints its loss, and a
    summary line replaces the bar at the end. ``bar``: count the batches on that bar instead (no lines printed).
    ``train_epoch`` gets ``progress=False``: the bar is this function's.
    """
    optimizer = torch.optim.Adam(list(encoder.parameters()) + list(head.parameters()), lr=lr, weight_decay=1e-6)
    own = bar is None
    if own:
        bar = Progress("SimCLR pretraining", epochs * len(loader), enabled=progress)
    losses = []
    with contextlib.ExitStack() as stack:
        if own:
            stack.enter_context(bar)
        for epoch in range(epochs):
            losses.append(train_epoch(encoder, head, bar.track(loader), optimizer, temperature, device, False))
            bar.update(0, note=f"epoch {epoch + 1}/{epochs}, loss {losses[-1]:.4f}")
            if own and progress:
                print(f"epoch {epoch + 1:3d}/{epochs}  loss {losses[-1]:.4f}", flush=True)
        if own:
            bar.close(f"SimCLR pretraining: {epochs} epochs in {bar.elapsed_text()}, last loss {losses[-1]:.4f}"
                      if losses else None)
    return losses


def simclr_run(data: LabData, augment: Callable, head_factory: Callable[[int], nn.Module], train_epoch: Callable,
               linear_probe: Callable, preset: Preset, device: torch.device, *, epochs: int | None = None,
               fraction: float | None = None, batch_size: int | None = None, temperature: float | None = None,
               seed: int = 0, progress: bool = False, fast: bool = False) -> dict:
    """One short SimCLR run for an exercise: pretrain a fresh encoder, then its probe and kNN accuracy.

    ``head_factory(out_dim_of_encoder)`` builds the projection head (``nn.Identity()`` for "no head").
    Settings left as ``None`` come from the preset's exercise budget. ``fast`` draws the views on the device
    (``DevicePairLoader``) instead of in CPU workers. ``progress``: one bar for the whole run (pretraining,
    probe, kNN) with the time left, replaced at the end by one line with the run's results.
    """
    torch.manual_seed(seed)
    subset = balanced_subset(data.train, fraction or preset.experiment_fraction, seed=seed)
    if fast:
        loader = DevicePairLoader(subset, augment, batch_size or preset.batch_size, device, seed)
    else:
        loader = pair_loader(subset, augment, batch_size or preset.batch_size, preset.workers, seed)
    encoder = build_encoder(preset.encoder).to(device)
    head = head_factory(encoder.out_dim).to(device)
    epochs = epochs or preset.experiment_epochs
    changed = ", ".join(f"{name} {value}" for name, value in (("epochs", epochs), ("fraction", fraction),
                        ("batch", batch_size), ("tau", temperature)) if value is not None and name != "epochs")
    desc = f"SimCLR run ({changed})" if changed else "SimCLR run"
    # the bar counts the pretraining batches, then the probe's and the kNN's passes over the labelled images
    with Progress(desc, epochs * len(loader) + 2 * data.evaluation_batches, enabled=progress) as bar:
        start = time.perf_counter()
        losses = pretrain(encoder, head, loader, train_epoch, epochs, preset.lr, temperature or preset.temperature,
                          device, progress, bar=bar)
        seconds = time.perf_counter() - start
        bar.update(0, note="linear probe")
        probe = linear_probe(encoder, bar.track(data.probe_train), bar.track(data.probe_test),
                             epochs=preset.probe_epochs, device=device)
        bar.update(0, note="kNN")
        train_h, train_y = extract_features(encoder, bar.track(data.probe_train), device)
        test_h, test_y = extract_features(encoder, bar.track(data.probe_test), device)
        knn = knn_accuracy(train_h, train_y, test_h, test_y)
        bar.close(f"{desc}: probe {probe:.2%}, kNN {knn:.2%}; {epochs} epochs in {duration(seconds)}, "
                  f"{bar.elapsed_text()} in all")
    return dict(probe=probe, knn=knn, losses=losses, seconds=seconds)


def progress_bar(iterable: Iterable, **kwargs) -> Iterable:
    """A tqdm progress bar over ``iterable`` (a widget in Jupyter, text elsewhere) that iterates it once.

    ``tqdm.auto``'s bar also serves ``async for``, and for that calls ``iter(iterable)`` as soon as it is made
    (tqdm/tqdm#1598). On a DataLoader with workers (and no persistent ones) that starts a second set of workers
    that nothing reads and nothing stops; in Jupyter the bar sits in a reference cycle, and when the garbage
    collector finally frees that iterator inside a process forked later (the next epoch's workers), its
    clean-up fails there: "AssertionError: can only test a child process", once per worker and epoch.
    """
    return tqdm(iterable, **kwargs)


def supervised_augmentations() -> transforms.Compose:
    """The usual supervised CIFAR-10 augmentation: padded random crop and horizontal flip."""
    return transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                               transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)])


def train_supervised(encoder: nn.Module, dataset: Dataset, test_loader: DataLoader, epochs: int, lr: float,
                     batch_size: int, device: torch.device | str, num_classes: int = 10, workers: int = 0,
                     progress: bool = True) -> float:
    """The supervised baseline: encoder + linear classifier trained end to end with labels; test accuracy."""
    loader = DataLoader(_with_transform(dataset, supervised_augmentations()), batch_size=batch_size, shuffle=True,
                        drop_last=True, num_workers=workers, generator=torch.Generator().manual_seed(0))
    model = nn.Sequential(encoder, nn.Linear(encoder.out_dim, num_classes)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=5e-4)
    with Progress("supervised baseline", epochs * len(loader), enabled=progress) as bar:
        for epoch in range(epochs):
            model.train()
            for x, y in bar.track(loader):
                loss = F.cross_entropy(model(x.to(device)), y.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            bar.update(0, note=f"epoch {epoch + 1}/{epochs}, loss {loss.item():.4f}")
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
                total += len(y)
        bar.close(f"supervised baseline: {epochs} epochs in {bar.elapsed_text()}, test accuracy {correct / total:.2%}")
    return correct / total
