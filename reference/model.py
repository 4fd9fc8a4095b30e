"""The projection head g(.)."""
import torch
from torch import nn


class ProjectionHead(nn.Module):
    """The MLP g(h) with one hidden layer that maps a representation h to z.

    Linear(in_dim, hidden_dim) -> [BatchNorm1d] -> ReLU -> Linear(hidden_dim, out_dim).
    """

    def __init__(self, in_dim: int = 512, hidden_dim: int = 512, out_dim: int = 128,
                 batch_norm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)
