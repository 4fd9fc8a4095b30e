"""train_epoch: both views, one optimizer step per batch, fresh gradients, mean loss, learning."""
import torch
from torch import nn

from reference import ProjectionHead, nt_xent, train_epoch


def make_batches(n_batches=3, n=8, d=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n_batches):
        x = torch.randn(n, d, generator=gen)
        batches.append(((x + 0.1 * torch.randn(n, d, generator=gen), x + 0.1 * torch.randn(n, d, generator=gen)),
                        torch.zeros(n, dtype=torch.long)))
    return batches


class RecordingEncoder(nn.Linear):
    """A linear encoder that remembers every input row it sees."""

    def __init__(self, d):
        super().__init__(d, 6)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return super().forward(x)


class CountingSGD(torch.optim.SGD):
    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.steps = 0

    def step(self, closure=None):
        self.steps += 1
        return super().step(closure)


def test_sees_both_views_and_steps_once_per_batch():
    torch.manual_seed(0)
    batches = make_batches()
    encoder, head = RecordingEncoder(12), ProjectionHead(6, 8, 4, batch_norm=False)
    optimizer = CountingSGD(list(encoder.parameters()) + list(head.parameters()), lr=0.1)
    train_epoch(encoder, head, batches, optimizer, progress=False)
    seen = torch.cat(encoder.seen)
    for (x_i, x_j), _ in batches:
        for view in (x_i, x_j):
            assert all((seen == row).all(dim=1).any() for row in view), "the encoder never saw one of the views"
    assert optimizer.steps == len(batches)


def test_returns_mean_batch_loss_and_fresh_gradients():
    """With lr=0 nothing moves: the result is the mean of the batch losses and the gradients are the last batch's."""
    torch.manual_seed(0)
    batches = make_batches()
    encoder, head = nn.Linear(12, 6), ProjectionHead(6, 8, 4, batch_norm=False)
    params = list(encoder.parameters()) + list(head.parameters())
    mean_loss = train_epoch(encoder, head, batches, torch.optim.SGD(params, lr=0.0), temperature=0.3, progress=False)
    losses = [nt_xent(head(encoder(x_i)), head(encoder(x_j)), 0.3) for (x_i, x_j), _ in batches]
    assert abs(mean_loss - torch.stack(losses).mean().item()) < 1e-5
    expected = torch.autograd.grad(losses[-1], params)
    for p, g in zip(params, expected):
        assert torch.allclose(p.grad, g, atol=1e-6), "gradients accumulate across batches: zero_grad missing?"


def test_updates_encoder_and_head_and_sets_train_mode():
    torch.manual_seed(0)
    encoder, head = nn.Sequential(nn.Linear(12, 6), nn.BatchNorm1d(6)), ProjectionHead(6, 8, 4)
    encoder.eval(), head.eval()
    before = [p.detach().clone() for p in list(encoder.parameters()) + list(head.parameters())]
    optimizer = torch.optim.SGD(list(encoder.parameters()) + list(head.parameters()), lr=0.1)
    train_epoch(encoder, head, make_batches(), optimizer, progress=False)
    after = list(encoder.parameters()) + list(head.parameters())
    assert all(not torch.equal(b, a) for b, a in zip(before, after))
    assert encoder.training and head.training


def test_lowers_the_loss_on_a_learnable_problem():
    torch.manual_seed(0)
    batches = make_batches(n_batches=4, n=16, seed=1)
    encoder, head = nn.Linear(12, 16), ProjectionHead(16, 32, 8, batch_norm=False)
    optimizer = torch.optim.Adam(list(encoder.parameters()) + list(head.parameters()), lr=1e-2)
    losses = [train_epoch(encoder, head, batches, optimizer, temperature=0.5, progress=False) for _ in range(30)]
    assert losses[-1] < 0.8 * losses[0], f"loss went from {losses[0]:.3f} to {losses[-1]:.3f}"
