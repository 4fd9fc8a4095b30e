"""Wrong NT-Xent implementations that the loss tests must reject, each with the signature of ``nt_xent``."""
import torch
import torch.nn.functional as F
from torch import nn


def seed_002_loss(z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> torch.Tensor:
    """Seed 002's ContrastiveLoss(z_pos, z_neg): a softmax over one mean similarity, i.e. a constant."""
    cos = nn.CosineSimilarity(dim=1)
    pos_sim = cos(z_i, z_i).mean()
    neg_sim = cos(z_j, z_j).mean()
    # The seed's line is cut off after "/ nn.func"; any softmax of a single value is 1, so the loss is -log(1).
    return -torch.log(torch.mean(F.softmax(pos_sim.reshape(1), dim=0))) / F.softmax(neg_sim.reshape(1), dim=0).mean()


def seed_004_loss(z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> torch.Tensor:
    """Seed 004's ContrastiveLoss(features): every view's 'positive' is itself, and nothing is masked."""
    features = F.normalize(torch.cat([z_i, z_j]), dim=1)
    similarity_matrix = features @ features.T / temperature
    labels = torch.arange(features.size(0))
    return nn.CrossEntropyLoss()(similarity_matrix, labels)


def _logits(z_i, z_j, temperature, normalise=True):
    z = torch.cat([z_i, z_j])
    if normalise:
        z = F.normalize(z, dim=1)
    return z @ z.T / temperature


def _targets(n: int) -> torch.Tensor:
    return torch.arange(2 * n).roll(n)


def self_similarity_kept(z_i, z_j, temperature):
    """Forgets to exclude k = i from the denominator."""
    return F.cross_entropy(_logits(z_i, z_j, temperature), _targets(len(z_i)))


def _masked(logits):
    return logits.masked_fill(torch.eye(len(logits), dtype=torch.bool), float("-inf"))


def no_l2_normalisation(z_i, z_j, temperature):
    return F.cross_entropy(_masked(_logits(z_i, z_j, temperature, normalise=False)), _targets(len(z_i)))


def temperature_multiplied(z_i, z_j, temperature):
    return F.cross_entropy(_masked(_logits(z_i, z_j, 1.0) * temperature), _targets(len(z_i)))


def mean_over_n(z_i, z_j, temperature):
    """Sums the 2N anchor losses but divides by N."""
    return F.cross_entropy(_masked(_logits(z_i, z_j, temperature)), _targets(len(z_i)), reduction="sum") / len(z_i)


def one_direction_only(z_i, z_j, temperature):
    """Uses only the anchors of the first view, l(2k-1, 2k), ignoring l(2k, 2k-1)."""
    n = len(z_i)
    return F.cross_entropy(_masked(_logits(z_i, z_j, temperature))[:n], _targets(n)[:n])


def interleaved_targets(z_i, z_j, temperature):
    """Concatenates the views but picks positives as if they were interleaved (2k, 2k+1)."""
    n2 = 2 * len(z_i)
    return F.cross_entropy(_masked(_logits(z_i, z_j, temperature)), torch.arange(n2) ^ 1)


BROKEN_LOSSES = {
    "seed 002": seed_002_loss,
    "seed 004": seed_004_loss,
    "self-similarity kept": self_similarity_kept,
    "no L2 normalisation": no_l2_normalisation,
    "temperature multiplied": temperature_multiplied,
    "mean over N": mean_over_n,
    "one direction only": one_direction_only,
    "interleaved targets": interleaved_targets,
}
