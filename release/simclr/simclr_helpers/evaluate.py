"""Evaluating a frozen encoder without labels in training: features, kNN accuracy, retrieval, t-SNE."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def extract_features(encoder: nn.Module, loader: Iterable,
                     device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Representations h = f(x) of every image in ``loader`` (items ``(x, label)``), on the CPU.

    The encoder runs in eval mode (BatchNorm uses its running statistics and leaves them unchanged)
    and is put back in the mode it was in.
    """
    was_training = encoder.training
    encoder.eval()
    features, labels = [], []
    for x, y in loader:
        features.append(encoder(x.to(device, non_blocking=True)).float().cpu())
        labels.append(torch.as_tensor(y))
    encoder.train(was_training)
    return torch.cat(features), torch.cat(labels)


def knn_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, k: int = 200, temperature: float = 0.1, num_classes: int = 10) -> float:
    """Weighted k-nearest-neighbour accuracy on cosine similarity (the monitor of Wu et al., 2018)."""
    train_n = F.normalize(train_features.float(), dim=1)
    test_n = F.normalize(test_features.float(), dim=1)
    k = min(k, len(train_labels))
    correct = 0
    for start in range(0, len(test_labels), 1024):
        sims, idx = (test_n[start:start + 1024] @ train_n.T).topk(k, dim=1)
        votes = torch.zeros(len(idx), num_classes)
        votes.scatter_add_(1, train_labels[idx], (sims / temperature).exp())
        correct += (votes.argmax(dim=1) == test_labels[start:start + 1024]).sum().item()
    return correct / len(test_labels)


def stratified_sample(labels: torch.Tensor | np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` items (at most all) with every class of ``labels`` as equally represented as ``n``
    allows, chosen at random with ``seed``; sorted. For plots of a few points from a class-sorted data set."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    rank = np.empty(len(labels))   # an item's place in a random order of its own class
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[rng.permutation(members)] = np.arange(len(members))
    order = np.lexsort((rng.random(len(labels)), rank))   # first of every class, then second of every class, ...
    return np.sort(order[:min(n, len(labels))])


def tsne_2d(features: torch.Tensor, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """A 2-D t-SNE embedding (scikit-learn) of the rows of ``features``, for plotting."""
    from sklearn.manifold import TSNE
    x = F.normalize(features.float(), dim=1).numpy()
    return TSNE(n_components=2, perplexity=min(perplexity, len(x) - 1), init="pca",
                random_state=seed).fit_transform(x)


def nearest_neighbours(queries: torch.Tensor, gallery: torch.Tensor, k: int = 8) -> torch.Tensor:
    """Indices (len(queries), k) of the ``k`` gallery rows most cosine-similar to each query, best first."""
    sims = F.normalize(queries.float(), dim=1) @ F.normalize(gallery.float(), dim=1).T
    return sims.topk(min(k, len(gallery)), dim=1).indices
