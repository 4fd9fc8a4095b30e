"""Reference solution of the SimCLR assignment: the five student components.

The course helpers they build on (data, encoders, evaluation) live in ``simclr_helpers``, which ships to
students with the notebook; they are re-exported here so ``reference`` alone gives the whole API.
"""
from simclr_helpers import (CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, CIFAR10NotFoundError, SmallCNN,
                            TwoViewDataset, balanced_subset, build_encoder, extract_features, get_eval_transform,
                            knn_accuracy, load_cifar10, resnet18_cifar, tsne_2d)

from .augment import get_augmentations
from .evaluate import linear_probe
from .loss import nt_xent
from .model import ProjectionHead
from .train import train_epoch

__all__ = [
    "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR10NotFoundError", "ProjectionHead", "SmallCNN",
    "TwoViewDataset", "balanced_subset", "build_encoder", "extract_features", "get_augmentations",
    "get_eval_transform", "knn_accuracy", "linear_probe", "load_cifar10", "nt_xent", "resnet18_cifar",
    "train_epoch", "tsne_2d",
]
