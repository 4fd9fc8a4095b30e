"""Evaluating a frozen encoder: features, linear probe, kNN accuracy, t-SNE."""
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


def linear_probe(encoder: nn.Module, train_loader: Iterable, test_loader: Iterable, num_classes: int = 10,
                 epochs: int = 30, lr: float = 1e-3, device: str | torch.device = "cpu", seed: int = 0) -> float:
    """Test accuracy in [0, 1] of a linear classifier trained on the frozen encoder's representations h.

    The loaders yield ``(image, label)`` with a deterministic transform. The encoder is only run in
    eval mode without gradients, so its weights, BatchNorm statistics and ``requires_grad`` flags are
    unchanged. The features are standardised with the training set's mean and standard deviation
    (without this, a probe on small-magnitude features is badly conditioned and under-rates them) and the
    classifier is trained with Adam on mini-batches of 256 precomputed features.
    """
    train_h, train_y = extract_features(encoder, train_loader, device)
    test_h, test_y = extract_features(encoder, test_loader, device)
    mean, std = train_h.mean(dim=0), train_h.std(dim=0) + 1e-6
    train_h, test_h = (train_h - mean) / std, (test_h - mean) / std
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = nn.Linear(train_h.shape[1], num_classes)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr, weight_decay=1e-5)
    for _ in range(epochs):
        for batch in torch.randperm(len(train_y), generator=generator).split(256):
            loss = F.cross_entropy(classifier(train_h[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        predictions = classifier(test_h).argmax(dim=1)
    return (predictions == test_y).float().mean().item()


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


def tsne_2d(features: torch.Tensor, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """A 2-D t-SNE embedding (scikit-learn) of the rows of ``features``, for plotting."""
    from sklearn.manifold import TSNE
    x = F.normalize(features.float(), dim=1).numpy()
    return TSNE(n_components=2, perplexity=min(perplexity, len(x) - 1), init="pca",
                random_state=seed).fit_transform(x)
