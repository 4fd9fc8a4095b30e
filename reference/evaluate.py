"""The linear probe: a linear classifier on the frozen encoder's representations."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from simclr_helpers import extract_features


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
