"""NT-Xent, the normalized temperature-scaled cross-entropy loss of SimCLR."""
import torch
import torch.nn.functional as F


def nt_xent(z_i: torch.Tensor, z_j: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent loss of a batch of N positive pairs ``(z_i[k], z_j[k])``.

    The 2N projections are L2-normalised, every anchor is contrasted with the
    other 2N - 1 views (its own similarity is excluded), and the loss is the
    mean over all 2N anchors, as in SimCLR's Algorithm 1.

    Args:
        z_i: projections of the first views, shape (N, D).
        z_j: projections of the second views, shape (N, D).
        temperature: tau > 0; smaller values sharpen the softmax.

    Returns:
        A scalar tensor that supports ``backward()``.
    """
    n = z_i.shape[0]
    z = F.normalize(torch.cat([z_i, z_j]).float(), dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    # Row k's positive is the other view of the same image: k + N for the first half, k - N for the second.
    positives = torch.arange(2 * n, device=z.device).roll(n)
    return F.cross_entropy(logits, positives)
