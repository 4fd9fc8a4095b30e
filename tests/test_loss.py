"""NT-Xent: agreement with the formula, its properties, and rejection of the broken losses."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.checks import loss_checks
from broken_losses import BROKEN_LOSSES
from reference import nt_xent


@st.composite
def pairs(draw, max_n: int = 64):
    """A batch (z_i, z_j, tau): N in [1, max_n], D in [2, 64], any scale, tau in [0.05, 5]."""
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(2, 64))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1e-2, 1.0, 30.0]))
    tau = draw(st.floats(0.05, 5.0))
    gen = torch.Generator().manual_seed(seed)
    z_i = torch.randn(n, d, generator=gen) * scale
    # Positives are correlated with their anchors, as after training, so the loss is not near log(2N-1).
    z_j = z_i + torch.randn(n, d, generator=gen) * scale * draw(st.sampled_from([0.1, 1.0, 3.0]))
    return z_i, z_j, tau


@settings(max_examples=25)   # the loop is slow; 25 batches of every size and scale still cover it
@given(pairs())
def test_the_graders_oracle_is_the_formula_one_anchor_at_a_time(batch):
    """The vectorised float64 oracle the checks use equals the loop that reads like the formula."""
    fast, slow = loss_checks.nt_xent_formula(*batch), loss_checks.nt_xent_loop(*batch)
    assert math.isclose(fast, slow, rel_tol=1e-9, abs_tol=1e-9), (fast, slow)


def test_the_graders_oracle_keeps_its_precision_when_the_anchor_itself_dominates():
    """The other view opposite its anchor at a small tau: the denominator, exp(-1/tau), is lost next to the
    anchor's own exp(1/tau), so an oracle that summed all 2N terms and subtracted the anchor's would divide by 0."""
    z_i, z_j = torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 1e-3]])
    fast, slow = loss_checks.nt_xent_formula(z_i, z_j, 0.05), loss_checks.nt_xent_loop(z_i, z_j, 0.05)
    assert math.isfinite(fast) and math.isclose(fast, slow, rel_tol=1e-9, abs_tol=1e-12), (fast, slow)


@given(pairs())
def test_matches_the_formula(batch):
    loss_checks.check_matches_formula(nt_xent, *batch, tol=1e-5)


@pytest.mark.parametrize("check", loss_checks.PROPERTY_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@given(batch=pairs(max_n=24))
def test_property(check, batch):
    check(nt_xent, *batch)


def test_returns_float32_scalar_for_half_inputs():
    z = torch.randn(8, 16)
    loss = nt_xent(z.bfloat16(), (z + 0.1).bfloat16(), 0.1)
    assert loss.dim() == 0 and loss.dtype == torch.float32


def test_uniform_limit_value():
    """Orthogonal, equally spaced views at tau -> inf: every view is as likely, loss = log(2N - 1)."""
    z = torch.eye(8)
    assert math.isclose(nt_xent(z[:4], z[4:], 1e6).item(), math.log(7), rel_tol=1e-5)


FIXED_BATCHES = [
    (torch.randn(6, 8, generator=torch.Generator().manual_seed(s)) * scale,
     torch.randn(6, 8, generator=torch.Generator().manual_seed(s + 100)) * scale, tau)
    for s, scale, tau in [(0, 1.0, 0.5), (1, 5.0, 0.1), (2, 0.3, 1.0)]
]


def _catches(check, loss_fn) -> bool:
    for batch in FIXED_BATCHES:
        try:
            check(loss_fn, *batch)
        except (AssertionError, RuntimeError, ValueError, IndexError):
            return True
    return False


@pytest.mark.parametrize("name", sorted(BROKEN_LOSSES))
def test_broken_loss_fails_a_check(name):
    """Every wrong loss from the seeds (and the classic mistakes) must be caught by some check."""
    caught = [c.__name__ for c in loss_checks.ALL_CHECKS if _catches(c, BROKEN_LOSSES[name])]
    assert caught, f"no check catches the broken loss {name!r}"
    print(f"{name}: caught by {', '.join(caught)}")


@pytest.mark.parametrize("check", loss_checks.ALL_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_each_check_catches_some_broken_loss(check):
    """No property check is vacuous: each one rejects at least one of the broken losses."""
    assert any(_catches(check, loss) for loss in BROKEN_LOSSES.values()), f"{check.__name__} catches nothing"


@pytest.mark.parametrize("check", loss_checks.ALL_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_each_check_passes_reference_on_fixed_batches(check):
    for batch in FIXED_BATCHES:
        check(nt_xent, *batch)
