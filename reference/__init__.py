"""Reference solution of the SimCLR assignment: the five student components and what the lab needs around them."""
from .augment import CIFAR10_MEAN, CIFAR10_STD, get_augmentations, get_eval_transform
from .data import (CIFAR10_CLASSES, CIFAR10NotFoundError, TwoViewDataset, balanced_subset, load_cifar10)
from .evaluate import extract_features, knn_accuracy, linear_probe, tsne_2d
from .loss import nt_xent
from .model import ProjectionHead, SmallCNN, build_encoder, resnet18_cifar
from .train import train_epoch

__all__ = [
    "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR10NotFoundError", "ProjectionHead", "SmallCNN",
    "TwoViewDataset", "balanced_subset", "build_encoder", "extract_features", "get_augmentations",
    "get_eval_transform", "knn_accuracy", "linear_probe", "load_cifar10", "nt_xent", "resnet18_cifar",
    "train_epoch", "tsne_2d",
]
