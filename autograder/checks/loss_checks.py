"""Checks of an NT-Xent implementation ``loss_fn(z_i, z_j, temperature) -> scalar tensor``.

Each check raises ``AssertionError`` with a message that says what is wrong. They are driven by
hypothesis in the test suite and, run on a few fixed inputs, must catch the broken losses of the seeds.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

LossFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def nt_xent_loop(z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> float:
    """NT-Xent written as the formula reads, one anchor at a time, in float64: the slow oracle that
    ``nt_xent_formula`` is tested against."""
    z = [v.double() for v in torch.cat([z_i, z_j])]
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        positive = (i + n) % n2
        s = [float(z[i] @ z[k] / (z[i].norm() * z[k].norm())) for k in range(n2)]
        denominator = sum(math.exp(s[k] / temperature) for k in range(n2) if k != i)
        total += -math.log(math.exp(s[positive] / temperature) / denominator)
    return total / n2


def nt_xent_formula(z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> float:
    """NT-Xent as the formula reads, all anchors at once, in float64: the oracle the checks compare against.

    Each anchor's denominator sums exp(s/tau) over the 2N - 1 other views (its own entry masked, never subtracted,
    so no precision is lost when it dominates). ``nt_xent_loop`` is the same formula one anchor at a time."""
    z = torch.cat([z_i, z_j]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n2 = len(z)
    exp_similarity = torch.exp(z @ z.T / temperature)
    denominators = exp_similarity.masked_fill(torch.eye(n2, dtype=torch.bool), 0.0).sum(dim=1)
    positives = exp_similarity[torch.arange(n2), torch.arange(n2).roll(n2 // 2)]
    return float(-torch.log(positives / denominators).mean())


def _value(loss_fn: LossFn, z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> float:
    loss = loss_fn(z_i.clone(), z_j.clone(), temperature)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0, "the loss must be a scalar (0-d) tensor"
    value = float(loss)
    assert math.isfinite(value), f"the loss is {value} at temperature {temperature}"
    return value


def check_matches_formula(loss_fn: LossFn, z_i: torch.Tensor, z_j: torch.Tensor, temperature: float,
                          tol: float = 1e-5) -> None:
    got = _value(loss_fn, z_i, z_j, temperature)
    expected = nt_xent_formula(z_i, z_j, temperature)
    assert abs(got - expected) <= tol * max(1.0, abs(expected)), (
        f"loss {got:.6f} differs from the NT-Xent formula's {expected:.6f} "
        f"(N={len(z_i)}, D={z_i.shape[1]}, tau={temperature})")


def check_symmetric(loss_fn: LossFn, z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> None:
    a, b = _value(loss_fn, z_i, z_j, temperature), _value(loss_fn, z_j, z_i, temperature)
    assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5), f"loss(z_i, z_j)={a:.6f} but loss(z_j, z_i)={b:.6f}"


def check_scale_invariant(loss_fn: LossFn, z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> None:
    """Rescaling any row by a positive factor must not change the loss (it uses cosine similarity)."""
    gen = torch.Generator().manual_seed(0)
    scale_i = torch.rand(len(z_i), 1, generator=gen) * 9.9 + 0.1
    scale_j = torch.rand(len(z_j), 1, generator=gen) * 9.9 + 0.1
    a = _value(loss_fn, z_i, z_j, temperature)
    b = _value(loss_fn, z_i * scale_i, z_j * scale_j, temperature)
    assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4), (
        f"rescaling the projections changed the loss from {a:.6f} to {b:.6f}: are they L2-normalised?")


def check_permutation_invariant(loss_fn: LossFn, z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> None:
    perm = torch.randperm(len(z_i), generator=torch.Generator().manual_seed(1))
    a, b = _value(loss_fn, z_i, z_j, temperature), _value(loss_fn, z_i[perm], z_j[perm], temperature)
    assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5), f"reordering the pairs changed the loss from {a:.6f} to {b:.6f}"


def check_single_pair_is_zero(loss_fn: LossFn, z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> None:
    """With N=1 each anchor's only other view is its positive, so the loss is exactly 0."""
    value = _value(loss_fn, z_i[:1], z_j[:1], temperature)
    assert abs(value) < 1e-6, f"with one pair the loss must be 0 (no negatives), got {value:.6f}"


def check_large_temperature_limit(loss_fn: LossFn, z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> None:
    """As tau grows every similarity counts alike: the loss tends to log(2N - 1)."""
    n = len(z_i)
    value = _value(loss_fn, z_i, z_j, 1e4)
    assert abs(value - math.log(2 * n - 1)) < 1e-3, (
        f"at tau=1e4 the loss should be about log(2N-1)={math.log(2 * n - 1):.4f} for N={n}, got {value:.4f}")


def check_increases_with_temperature_when_aligned(loss_fn: LossFn, z_i: torch.Tensor, z_j: torch.Tensor,
                                                   temperature: float) -> None:
    """With z_j == z_i every negative is less similar than the positive, so a larger tau raises the loss."""
    if len(z_i) < 2:
        return
    taus = [0.05, 0.1, 0.2, 0.5, 1.0, 2.0]
    values = [_value(loss_fn, z_i, z_i.clone(), t) for t in taus]
    for (t0, v0), (t1, v1) in zip(zip(taus, values), zip(taus[1:], values[1:])):
        assert v1 >= v0 - 1e-6, f"aligned positives: loss fell from {v0:.6f} at tau={t0} to {v1:.6f} at tau={t1}"
    assert values[-1] > values[0], "aligned positives: the loss did not grow with the temperature"


def check_stable_small_temperature(loss_fn: LossFn, z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> None:
    """Large inputs at tau=0.05 must give a finite loss equal to the formula's (no overflow in exp)."""
    check_matches_formula(loss_fn, z_i * 1e4, z_j * 1e4, 0.05, tol=1e-4)


def value_and_grad(loss_fn: LossFn, z_i: torch.Tensor, z_j: torch.Tensor,
                   temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss and the gradients reaching z_i and z_j; ``loss_fn.value_and_grad`` if it has one (the sandbox)."""
    custom = getattr(loss_fn, "value_and_grad", None)
    if custom is not None:
        return custom(z_i, z_j, temperature)
    a, b = z_i.clone().requires_grad_(True), z_j.clone().requires_grad_(True)
    loss = loss_fn(a, b, temperature)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.requires_grad, (
        "the loss must be a scalar tensor that depends on z_i and z_j")
    loss.backward()
    return (loss.detach(), a.grad if a.grad is not None else torch.zeros_like(a),
            b.grad if b.grad is not None else torch.zeros_like(b))


def formula_gradients(z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of NT-Xent in float64 (log-sum-exp over the 2N - 1 other views of each anchor)."""
    a, b = z_i.double().requires_grad_(True), z_j.double().requires_grad_(True)
    z = torch.cat([a, b])
    z = z / z.norm(dim=1, keepdim=True)
    n2 = len(z)
    logits = (z @ z.T / temperature).masked_fill(torch.eye(n2, dtype=torch.bool), float("-inf"))
    positives = torch.arange(n2).roll(n2 // 2)
    loss = (torch.logsumexp(logits, dim=1) - logits[torch.arange(n2), positives]).mean()
    loss.backward()
    return a.grad, b.grad


def check_gradients_match_formula(loss_fn: LossFn, z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> None:
    """The gradients reaching both inputs equal the formula's (so backward works and nothing is detached)."""
    _loss, grad_i, grad_j = value_and_grad(loss_fn, z_i, z_j, temperature)
    expected_i, expected_j = formula_gradients(z_i, z_j, temperature)
    for name, got, expected in (("z_i", grad_i, expected_i), ("z_j", grad_j, expected_j)):
        assert got.shape == expected.shape, f"the gradient reaching {name} has shape {tuple(got.shape)}"
        tolerance = 1e-5 * float(expected.abs().max()) + 1e-7
        error = float((got.double() - expected).abs().max())
        assert error <= tolerance + 1e-3 * float(expected.abs().max()), (
            f"the gradient reaching {name} differs from the formula's by up to {error:.2e} "
            f"(N={len(z_i)}, tau={temperature}): is part of the loss detached or computed without autograd?")


PROPERTY_CHECKS = (
    check_symmetric, check_scale_invariant, check_permutation_invariant, check_single_pair_is_zero,
    check_large_temperature_limit, check_increases_with_temperature_when_aligned, check_stable_small_temperature,
    check_gradients_match_formula,
)
ALL_CHECKS = (check_matches_formula,) + PROPERTY_CHECKS
