"""SimCLR's augmentation pipeline for 32x32 CIFAR images."""
from torchvision import transforms

from simclr_helpers import CIFAR10_MEAN, CIFAR10_STD


def get_augmentations(normalize: bool = True) -> transforms.Compose:
    """The random transformation t ~ T that makes one view of a PIL image.

    RandomResizedCrop(32), horizontal flip (p=0.5), colour jitter
    (0.4, 0.4, 0.4, 0.1) applied with p=0.8, grayscale (p=0.2), ToTensor,
    and CIFAR-10 normalisation when ``normalize``.
    """
    steps = [
        transforms.RandomResizedCrop(size=32),
        transforms.RandomHorizontalFlip(p=0.5),
        transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        transforms.RandomGrayscale(p=0.2),
        transforms.ToTensor(),
    ]
    if normalize:
        steps.append(transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD))
    return transforms.Compose(steps)
