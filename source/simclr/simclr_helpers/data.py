"""CIFAR-10 from torchvision (online) or from an ImageFolder copy (offline), subsets, two-view pairs."""
from __future__ import annotations

import os
import socket
import urllib.error
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import transforms

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
DATA_ENV_VAR = "CIFAR10_DIR"
COPY_NAME = Path("data") / "cifar10-jpeg"

HOW_TO_GET_DATA = (
    "Get CIFAR-10 in one of two ways:\n"
    "  * with internet access: load_cifar10(root=<any folder>, download=True) fetches it through torchvision;\n"
    "  * offline: unpack an ImageFolder copy (train/<class>/*.jpg, test/<class>/*.jpg), e.g.\n"
    "      mkdir -p data && tar -xzf ../shared/data/cifar10-jpeg.tar.gz -C data\n"
    f"    and point {DATA_ENV_VAR} at the unpacked cifar10-jpeg folder (bash setup.sh does this for you)."
)


HUB_SETUP = (
    "On a JupyterHub without internet access the instructor unpacks the copy in a folder every student server\n"
    "can read and adds one line to jupyterhub_config.py, e.g.\n"
    f"    c.Spawner.environment = {{\"{DATA_ENV_VAR}\": \"/srv/data/cifar10-jpeg\"}}\n"
    "then restarts the hub (students restart their servers)."
)


class CIFAR10NotFoundError(FileNotFoundError):
    """The CIFAR-10 folder is missing or is not laid out as expected."""


class CIFAR10DownloadError(CIFAR10NotFoundError):
    """No offline copy was found and torchvision's download failed (typically: no internet access)."""


def download_failed_message(reason: object, looked_at: Path | None = None) -> str:
    """What to do when the download fails: the folder that was looked for, ``$CIFAR10_DIR``, the hub's line."""
    looked_at = resolve_data_dir() if looked_at is None else looked_at
    variable = (f"{DATA_ENV_VAR} is set to {os.environ[DATA_ENV_VAR]!r}" if os.environ.get(DATA_ENV_VAR)
                else f"{DATA_ENV_VAR} is not set")
    return (f"CIFAR-10 could not be downloaded ({reason}), and no offline copy was found: looked for "
            f"{looked_at / 'train'} ({variable}).\n"
            f"Students: ask your instructor where the course's copy of CIFAR-10 is, then run\n"
            f"    import os; os.environ[\"{DATA_ENV_VAR}\"] = \"/path/to/cifar10-jpeg\"\n"
            f"in a cell before loading the data (or put the unpacked cifar10-jpeg folder in ./data/).\n"
            f"{HUB_SETUP}")


class ArrayImageDataset(Dataset):
    """Images held in memory as a uint8 array (N, 32, 32, 3); items are (PIL image or transform(image), label)."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, transform: Callable | None = None) -> None:
        self.data = images
        self.targets = [int(t) for t in targets]
        self.classes = list(CIFAR10_CLASSES)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.data[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


def get_eval_transform(normalize: bool = True) -> transforms.Compose:
    """The deterministic transform used to compute representations for evaluation: ToTensor (+ Normalize)."""
    steps = [transforms.ToTensor()]
    if normalize:
        steps.append(transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD))
    return transforms.Compose(steps)


def resolve_data_dir(root: str | os.PathLike | None = None) -> Path:
    """The ImageFolder copy to use: ``root``, else ``$CIFAR10_DIR``, else the first ``data/cifar10-jpeg``
    found in the working directory or a folder above it or above this file (the course repository's copy)."""
    if root is not None:
        return Path(root)
    if os.environ.get(DATA_ENV_VAR):
        return Path(os.environ[DATA_ENV_VAR])
    here = Path(__file__).resolve().parent
    candidates = [folder / COPY_NAME for start in (Path.cwd().resolve(), here) for folder in (start, *start.parents)]
    return next((c for c in candidates if (c / "train").is_dir()), Path.cwd() / COPY_NAME)


def offline_copy_available(root: str | os.PathLike | None = None) -> bool:
    """Whether an ImageFolder copy of CIFAR-10 can be found (else the notebook downloads the original)."""
    return (resolve_data_dir(root) / "train").is_dir()


def _check_layout(split_dir: Path) -> None:
    if not split_dir.is_dir():
        raise CIFAR10NotFoundError(f"CIFAR-10 folder not found: {split_dir} does not exist.\n{HOW_TO_GET_DATA}")
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if found != sorted(CIFAR10_CLASSES):
        raise CIFAR10NotFoundError(
            f"{split_dir} is not a CIFAR-10 ImageFolder: expected one folder per class "
            f"{list(CIFAR10_CLASSES)}, found {found}.\n{HOW_TO_GET_DATA}")


def _read_image_folder(split_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    images, targets = [], []
    for label, name in enumerate(CIFAR10_CLASSES):
        files = sorted((split_dir / name).glob("*.jpg")) + sorted((split_dir / name).glob("*.png"))
        if not files:
            raise CIFAR10NotFoundError(f"{split_dir / name} holds no .jpg or .png images.\n{HOW_TO_GET_DATA}")
        for file in files:
            try:
                with Image.open(file) as im:
                    images.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            except OSError as err:
                raise CIFAR10NotFoundError(f"cannot read image {file}: {err}.\n{HOW_TO_GET_DATA}") from err
            targets.append(label)
    shapes = {im.shape for im in images}
    if shapes != {(32, 32, 3)}:
        raise CIFAR10NotFoundError(f"{split_dir}: CIFAR-10 images are 32x32 RGB, found shapes {sorted(shapes)}.")
    return np.stack(images), np.asarray(targets, dtype=np.int64)


def _load_arrays(split_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode the folder once, then reuse a .npz cache beside it (or in ~/.cache when the folder is read-only)."""
    _check_layout(split_dir)
    caches = [split_dir.parent / f".{split_dir.name}-cache.npz",
              Path.home() / ".cache" / "simclr-course" / f"{split_dir.resolve().as_posix().strip('/').replace('/', '_')}.npz"]
    for cache in caches:
        if cache.is_file() and cache.stat().st_mtime >= split_dir.stat().st_mtime:
            with np.load(cache) as arrays:
                return arrays["images"], arrays["targets"]
    images, targets = _read_image_folder(split_dir)
    for cache in caches:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp.npz")
            np.savez(tmp, images=images, targets=targets)
            tmp.replace(cache)
            break
        except OSError:
            continue
    return images, targets


def load_cifar10(train: bool = True, transform: Callable | None = None,
                 root: str | os.PathLike | None = None, download: bool = False) -> Dataset:
    """CIFAR-10's train or test split; items are ``(image, label)``, the image passed through ``transform``.

    With ``download=True`` torchvision fetches the original data set into ``root`` (needs internet, e.g. Colab);
    when that fails for want of a network, :class:`CIFAR10DownloadError` says which offline folder was looked
    for and how to point ``$CIFAR10_DIR`` at one (on a JupyterHub: the instructor's ``c.Spawner.environment``).
    Otherwise an ImageFolder copy is read from ``root``, ``$CIFAR10_DIR`` or ``data/cifar10-jpeg``;
    a missing or malformed folder raises :class:`CIFAR10NotFoundError` naming the path and how to get the data.
    """
    if download:
        from torchvision.datasets import CIFAR10
        try:
            return CIFAR10(root=str(root or "data"), train=train, transform=transform, download=True)
        except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout) as err:
            reason = getattr(err, "reason", None) or err
            raise CIFAR10DownloadError(download_failed_message(reason)) from None
    images, targets = _load_arrays(resolve_data_dir(root) / ("train" if train else "test"))
    return ArrayImageDataset(images, targets, transform)


def dataset_targets(dataset: Dataset) -> np.ndarray:
    """The labels of a CIFAR-style data set or a Subset of one, without loading any image."""
    if isinstance(dataset, Subset):
        return dataset_targets(dataset.dataset)[np.asarray(dataset.indices)]
    return np.asarray(dataset.targets)


def balanced_subset(dataset: Dataset, fraction: float, seed: int = 0) -> Subset:
    """A class-balanced random ``fraction`` of ``dataset`` (the same share of every class), fixed by ``seed``."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    targets = dataset_targets(dataset)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label)
        take = max(1, round(fraction * len(members)))
        chosen.append(rng.choice(members, size=take, replace=False))
    return Subset(dataset, np.sort(np.concatenate(chosen)).tolist())


class TwoViewDataset(Dataset):
    """Wraps a data set of (PIL image, label): each item is ``((t(x), t'(x)), label)`` with two independent draws."""

    def __init__(self, base: Dataset, transform: Callable) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
        image, label = self.base[index]
        return (self.transform(image), self.transform(image)), label


def one_per_class(dataset: Dataset, classes: tuple[int, ...] = tuple(range(10)), skip: int = 0) -> list[int]:
    """Indices of one image of each of ``classes`` (the ``skip``-th of its class), for figures."""
    targets = dataset_targets(dataset)
    return [int(np.flatnonzero(targets == label)[skip]) for label in classes]


def images_as_tensor(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of a CIFAR-style data set (or a Subset of one) as uint8 (n, 3, 32, 32), and their labels."""
    base, indices = (dataset.dataset, np.asarray(dataset.indices)) if isinstance(dataset, Subset) else (dataset, None)
    pixels = np.asarray(base.data) if hasattr(base, "data") else np.stack([np.asarray(base[i][0])
                                                                          for i in range(len(base))])
    pixels = pixels if indices is None else pixels[indices]
    return torch.as_tensor(pixels).permute(0, 3, 1, 2).contiguous(), torch.as_tensor(dataset_targets(dataset))
