"""The augmentation pipeline: different views, shape, statistics, and its random steps."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from reference import CIFAR10_MEAN, CIFAR10_STD, get_augmentations


@pytest.fixture(scope="module")
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, 32, dtype=np.uint8)
    pixels = np.stack([np.tile(gradient, (32, 1)), np.tile(gradient[:, None], (1, 32)),
                       rng.integers(0, 256, (32, 32), dtype=np.uint8)], axis=-1)
    return Image.fromarray(pixels)


def test_steps_follow_simclr():
    steps = get_augmentations(normalize=True).transforms
    kinds = [type(s) for s in steps]
    assert kinds == [transforms.RandomResizedCrop, transforms.RandomHorizontalFlip, transforms.RandomApply,
                     transforms.RandomGrayscale, transforms.ToTensor, transforms.Normalize]
    crop, flip, jitter, gray = steps[:4]
    assert crop.size == (32, 32) and flip.p == 0.5 and gray.p == 0.2 and jitter.p == 0.8
    cj = jitter.transforms[0]
    assert (cj.brightness, cj.contrast, cj.saturation, cj.hue) == ((0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1))
    assert tuple(steps[5].mean) == CIFAR10_MEAN and tuple(steps[5].std) == CIFAR10_STD


def test_two_calls_give_different_views(image):
    augment = get_augmentations()
    torch.manual_seed(0)
    views = [augment(image) for _ in range(8)]
    assert all(not torch.equal(a, b) for a, b in zip(views, views[1:]))


@pytest.mark.parametrize("normalize", [True, False])
def test_shape_and_dtype(image, normalize):
    view = get_augmentations(normalize)(image)
    assert view.shape == (3, 32, 32) and view.dtype == torch.float32


def test_normalisation_statistics(image):
    """Without Normalize pixels lie in [0, 1]; with it, the same draw equals (x - mean) / std per channel."""
    torch.manual_seed(1)
    raw = get_augmentations(normalize=False)(image)
    torch.manual_seed(1)
    normalised = get_augmentations(normalize=True)(image)
    assert raw.min() >= 0 and raw.max() <= 1
    mean, std = torch.tensor(CIFAR10_MEAN)[:, None, None], torch.tensor(CIFAR10_STD)[:, None, None]
    assert torch.allclose(normalised, (raw - mean) / std, atol=1e-6)


def test_grayscale_rate(image):
    """About 20 % of views are gray (all channels equal). 2000 draws: 3 sigma is +-2.7 points."""
    augment = get_augmentations(normalize=False)
    torch.manual_seed(2)
    gray = sum(bool((v[0] == v[1]).all() and (v[1] == v[2]).all()) for v in (augment(image) for _ in range(2000)))
    assert abs(gray / 2000 - 0.2) < 0.027
