"""Helpers of the SimCLR lab: data, encoders, evaluation, figures and compute presets.

They ship to students with the notebook and hold no part of the five components the students write
(``get_augmentations``, ``ProjectionHead``, ``nt_xent``, ``train_epoch``, ``linear_probe``).
"""
from .data import (CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, CIFAR10DownloadError, CIFAR10NotFoundError, TwoViewDataset,
                   balanced_subset, dataset_targets, get_eval_transform, images_as_tensor, load_cifar10, offline_copy_available,
                   one_per_class, resolve_data_dir)
from .batch_augment import BatchAugment
from .encoders import SmallCNN, build_encoder, resnet18_cifar
from .evaluate import extract_features, knn_accuracy, nearest_neighbours, stratified_sample, tsne_2d
from .experiments import (DevicePairLoader, LabData, eval_loader, load_lab_data, pair_loader, pretrain, simclr_run,
                          train_supervised)
from . import checks
from .progress import Progress
from .selfcheck import self_check
from .runtime import PRESETS, Preset, Timer, choose_preset, describe_environment, needs, pick_device, seed_everything

__all__ = [
    "BatchAugment", "DevicePairLoader", "checks", "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR10DownloadError", "CIFAR10NotFoundError", "LabData", "PRESETS", "Preset", "Progress",
    "SmallCNN", "Timer", "TwoViewDataset", "balanced_subset", "build_encoder", "choose_preset", "dataset_targets",
    "describe_environment", "eval_loader", "extract_features", "get_eval_transform", "images_as_tensor", "knn_accuracy",
    "load_cifar10", "load_lab_data", "nearest_neighbours", "needs", "offline_copy_available", "one_per_class", "pair_loader",
    "pick_device", "pretrain", "resnet18_cifar", "seed_everything", "self_check", "simclr_run", "stratified_sample",
    "train_supervised", "tsne_2d",
]
