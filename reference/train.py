"""One epoch of SimCLR's Algorithm 1."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from .loss import nt_xent


def train_epoch(encoder: nn.Module, head: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                temperature: float = 0.5, device: str | torch.device = "cpu", progress: bool = True) -> float:
    """Train encoder f and head g for one pass over ``loader``; return the mean of the per-batch losses.

    ``loader`` yields ``((x_i, x_j), labels)``: two independently augmented views of the same N images
    (a DataLoader over :class:`TwoViewDataset`). Labels are ignored. Per batch: h = f(x), z = g(h) for
    both views, NT-Xent, one optimizer step.
    """
    encoder.train()
    head.train()
    losses = []
    for (x_i, x_j), _ in tqdm(loader, desc="train", leave=False, disable=not progress):
        x = torch.cat([x_i, x_j]).to(device, non_blocking=True)
        z_i, z_j = head(encoder(x)).chunk(2)
        loss = nt_xent(z_i, z_j, temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return sum(losses) / len(losses)
