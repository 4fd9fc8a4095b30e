"""The hidden checks of the five components. Never released: the students see only their names and messages.

Every check takes a ``student`` whose ``run(op, **inputs)`` returns plain data (see ``simclr_helpers.checks``)
and decides from that data alone, against values worked out here. Property tests use fixed hypothesis
settings, so a grade never changes between two runs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from simclr_helpers import CIFAR10_MEAN, CIFAR10_STD
from simclr_helpers import checks as ops

from autograder.checks import loss_checks

# Shrinking is off: the first failing example goes into the feedback, and a broken function costs no more time.
GRADING = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                   phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))


# --- get_augmentations --------------------------------------------------------------------------------

GRAY_P, JITTER_P, DRAWS = 0.2, 0.8, 1000
# Two-sided binomial tolerances of 5 points: 3.95 standard errors for the gray rate (p=0.2, n=1000) and 3.5 for
# the jitter rate among ~800 colour views (p=0.8): a correct pipeline fails either with probability < 5e-4.


def get_augmentations(student) -> None:
    """Gray and colour-jittered views at about their probabilities; random crops; Normalize is exactly last."""
    uniform = ops.uniform_image()
    views = student.run("augment", image=uniform, n=DRAWS, normalize=False, seed=1)
    assert views.shape == (DRAWS, 3, 32, 32), f"expected views of shape (3, 32, 32), got {tuple(views.shape[1:])}"
    gray_rate, jitter_rate = ops.view_rates(views, uniform)
    assert abs(gray_rate - GRAY_P) < 0.05, f"{100 * gray_rate:.1f} % of the views are gray; expected about 20 %"
    assert abs(jitter_rate - JITTER_P) < 0.05, (
        f"{100 * jitter_rate:.1f} % of the colour views are colour-jittered; expected about 80 %")

    ramp = torch.linspace(0, 255, 32).to(torch.uint8).expand(32, 32).unsqueeze(-1).expand(32, 32, 3).contiguous()
    crops = student.run("augment", image=ramp, n=20, normalize=False, seed=2)
    row = ramp[16].T.float() / 255
    changed = sum(not torch.allclose(view[:, 16, :], row, atol=1e-6) for view in crops)
    assert changed >= 15, "views of a gradient image rarely change place: is RandomResizedCrop missing?"

    image = ops.random_image(3)
    raw = student.run("augment", image=image, n=8, normalize=False, seed=4)
    normalised = student.run("augment", image=image, n=8, normalize=True, seed=4)
    mean, std = torch.tensor(CIFAR10_MEAN)[:, None, None], torch.tensor(CIFAR10_STD)[:, None, None]
    assert torch.allclose(normalised, (raw - mean) / std, atol=1e-4), (
        "with normalize=True the views must be the normalize=False views with the CIFAR-10 mean subtracted and "
        "divided by the std, per channel (Normalize with lab.CIFAR10_MEAN, lab.CIFAR10_STD as the last step)")


# --- ProjectionHead ----------------------------------------------------------------------------------

def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def _linear_step(step: dict, params: dict, inputs: torch.Tensor, in_dim: int, out_dim: int) -> tuple:
    weight, bias = params.get(f"{step['name']}.weight"), params.get(f"{step['name']}.bias")
    assert step["kind"] == "Linear" and weight is not None and weight.shape == (out_dim, in_dim), (
        f"expected Linear({in_dim}, {out_dim}) here, found {step['kind']} {step['name']}")
    return weight, bias


def _replay_head(result: dict, x: torch.Tensor, dims: tuple[int, int, int], batch_norm: bool):
    """Redo the traced computation as Linear -> [BatchNorm1d] -> ReLU -> Linear with the head's own parameters."""
    in_dim, hidden_dim, out_dim = dims
    params = {name: value.clone().requires_grad_(True) for name, value in result["params"].items()}
    steps = [s for s in result["trace"] if s["kind"] not in ("Identity", "Dropout")]
    kinds = [s["kind"] for s in steps]
    expected = ["Linear"] + (["BatchNorm1d"] if batch_norm else []) + ["ReLU", "Linear"]
    optional_relu = [k for k in expected if k != "ReLU"]
    assert kinds in (expected, optional_relu), (
        f"batch_norm={batch_norm}: the head calls {' -> '.join(kinds) or 'no layers'}; "
        f"expected {' -> '.join(expected)}")
    first, last = steps[0], steps[-1]
    assert _close(first["input"], x), "the first Linear layer does not receive the head's input"
    w1, b1 = _linear_step(first, params, x, in_dim, hidden_dim)
    h = x @ w1.T + (b1 if b1 is not None else 0)
    assert _close(first["output"], h.detach()), "the first Linear layer's output is not x W^T + b"
    previous = first
    if batch_norm:
        bn = steps[1]
        gamma, beta = params.get(f"{bn['name']}.weight"), params.get(f"{bn['name']}.bias")
        assert _close(bn["input"], previous["output"]), "BatchNorm1d does not normalise the first layer's output"
        h = F.batch_norm(h, None, None, gamma, beta, training=True, eps=bn["eps"])
        assert _close(bn["output"], h.detach()), "BatchNorm1d's output is not the batch-normalised hidden layer"
        previous = bn
    h = torch.relu(h)
    assert _close(last["input"], h.detach()), "the last Linear layer does not receive ReLU of the hidden layer"
    w2, b2 = _linear_step(last, params, h, hidden_dim, out_dim)
    z = h @ w2.T + (b2 if b2 is not None else 0)
    assert _close(result["output"], z.detach()), "the head's output is not the last Linear layer's output"
    return z, params


def projection_head(student) -> None:
    """The head computes Linear -> [BatchNorm1d] -> ReLU -> Linear and gradients reach every parameter."""
    dims = (20, 48, 12)
    gen = torch.Generator().manual_seed(5)
    for batch_norm in (True, False):
        x, grad_output = torch.randn(16, dims[0], generator=gen), torch.randn(16, dims[2], generator=gen)
        result = student.run("head", in_dim=dims[0], hidden_dim=dims[1], out_dim=dims[2], batch_norm=batch_norm,
                             x=x, grad_output=grad_output, seed=0, train=True)
        z, params = _replay_head(result, x, dims, batch_norm)
        (z * grad_output).sum().backward()
        for name, value in params.items():
            got = result["grads"].get(name)
            assert got is not None and got.abs().sum() > 0, f"batch_norm={batch_norm}: no gradient reaches {name}"
            assert _close(got, value.grad), f"batch_norm={batch_norm}: the gradient of {name} is wrong"
        has_running_stats = any(name.endswith("running_mean") for name in result["buffers"])
        assert has_running_stats == batch_norm, (
            f"batch_norm={batch_norm}, but the head {'keeps' if has_running_stats else 'keeps no'} running statistics")


# --- nt_xent -----------------------------------------------------------------------------------------

def nt_xent_formula(student) -> None:
    """Agreement with the formula on hypothesis-generated batches (N 1-64, D 2-64, several scales and tau)."""
    loss_fn = ops.loss_of(student)

    @settings(GRADING, max_examples=40)
    @given(n=st.integers(1, 64), d=st.integers(2, 64), seed=st.integers(0, 2**31 - 1),
           scale=st.sampled_from([1e-2, 1.0, 30.0]), noise=st.sampled_from([0.1, 1.0, 3.0]),
           tau=st.floats(0.05, 5.0))
    def matches_formula(n, d, seed, scale, noise, tau):
        gen = torch.Generator().manual_seed(seed)
        z_i = torch.randn(n, d, generator=gen) * scale
        z_j = z_i + torch.randn(n, d, generator=gen) * scale * noise
        loss_checks.check_matches_formula(loss_fn, z_i, z_j, tau, tol=1e-5)

    matches_formula()


def nt_xent_properties(student) -> None:
    """Symmetry, rescaling, reordering, a single pair, temperature limits, stability and gradients."""
    loss_fn = ops.loss_of(student)

    @settings(GRADING, max_examples=15)
    @given(n=st.integers(1, 24), d=st.integers(2, 32), seed=st.integers(0, 2**31 - 1), tau=st.floats(0.05, 5.0))
    def properties(n, d, seed, tau):
        gen = torch.Generator().manual_seed(seed)
        z_i = torch.randn(n, d, generator=gen)
        z_j = z_i + torch.randn(n, d, generator=gen)
        for check in loss_checks.PROPERTY_CHECKS:
            check(loss_fn, z_i, z_j, tau)

    properties()


# --- train_epoch -------------------------------------------------------------------------------------

VIEWS = {"x_i and x_j": (0, 1), "x_i twice": (0, 0), "x_j twice": (1, 1)}


def reference_steps(batches: list, encoder_state: dict, head_state: dict, dims: list[int], lr: float,
                    temperature: float, zero_grad: bool = True, views: tuple[int, int] = (0, 1)) -> list[tuple]:
    """SGD steps of Algorithm 1 on the given views, one per batch: (loss, encoder state, head state) after each."""
    from reference.loss import nt_xent
    encoder, head = ops.toy_models(*dims)
    encoder.load_state_dict(encoder_state)
    head.load_state_dict(head_state)
    optimizer = torch.optim.SGD(list(encoder.parameters()) + list(head.parameters()), lr=lr)
    steps = []
    for pair, _labels in batches:
        loss = nt_xent(head(encoder(pair[views[0]])), head(encoder(pair[views[1]])), temperature)
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps.append((loss.item(), ops.plain_state(encoder), ops.plain_state(head)))
    return steps


def reference_epoch(batches: list, encoder_state: dict, head_state: dict, dims: list[int], lr: float,
                    temperature: float, zero_grad: bool = True) -> tuple[float, dict, dict]:
    """One SGD epoch of Algorithm 1 on the given views: the mean loss and the weights after."""
    steps = reference_steps(batches, encoder_state, head_state, dims, lr, temperature, zero_grad)
    return sum(loss for loss, _, _ in steps) / len(steps), steps[-1][1], steps[-1][2]


def _same_weights(got: dict, expected: dict) -> bool:
    return all(torch.allclose(got[name], value, rtol=1e-4, atol=1e-5) for name, value in expected.items())


def _toy_loss(batches: list, encoder_state: dict, head_state: dict, dims: list[int], temperature: float) -> float:
    """The mean NT-Xent loss of toy models with the given weights over the batches (computed here)."""
    from reference.loss import nt_xent
    encoder, head = ops.toy_models(*dims)
    encoder.load_state_dict(encoder_state)
    head.load_state_dict(head_state)
    with torch.no_grad():
        losses = [nt_xent(head(encoder(x_i)), head(encoder(x_j)), temperature).item() for (x_i, x_j), _ in batches]
    return sum(losses) / len(losses)


# The weights a train_epoch leaves are read by the grader itself; what the student's process counted (steps, the
# inputs the encoder saw) only chooses the message of a check that the weights have already failed.

def train_epoch_steps(student, seed: int = 1) -> None:
    """The visible test's claims, decided from the weights: a positive float back, one optimizer step per batch.

    The step count is read off the weights: they must equal those after one step per batch of Algorithm 1, of
    its same-view variant, or of either without ``zero_grad`` (the mistakes the hidden test names); weights that
    none of these explains fail here too, since no count can be read from them."""
    dims = [12, 6, 8, 4]
    encoder_state, head_state = ops.toy_weights(dims, seed=seed)
    batches = ops.toy_batches(seed=seed)
    result = student.run("train_epoch", batches=batches, encoder_state=encoder_state, head_state=head_state,
                         dims=dims, optimizer="sgd", lr=0.1, temperature=0.5)
    mean = result["returned"][0]
    assert math.isfinite(mean) and mean > 0, f"the mean loss should be a positive number, got {mean}"
    counts = set()
    for views in VIEWS.values():
        for zero_grad in (True, False):
            steps = reference_steps(batches, encoder_state, head_state, dims, 0.1, 0.5, zero_grad, views)
            counts |= {k for k, (_, encoder_after, head_after) in enumerate(steps, 1)
                       if _same_weights(result["encoder"], encoder_after) and _same_weights(result["head"], head_after)}
    if len(batches) in counts:
        return
    for part, before in (("encoder", encoder_state), ("head", head_state)):
        for name, value in before.items():
            assert not torch.equal(value, result[part][name]), f"the {part}'s {name} did not change"
    if counts:
        raise AssertionError(f"{len(batches)} batches need {len(batches)} optimizer steps; the weights after the "
                             f"epoch are those after {min(counts)}")
    raise AssertionError(f"{len(batches)} batches need {len(batches)} optimizer steps, each on the loss of "
                         f"head(encoder(x_i)) and head(encoder(x_j)); the weights after the epoch are not those of "
                         "one such step per batch")


def train_epoch(student) -> None:
    """Both views reach the encoder; the epoch equals Algorithm 1 step for step; the loss falls on a toy problem."""
    dims = [12, 6, 8, 4]
    batches = ops.toy_batches(n_batches=3, n=8, seed=0)
    encoder_state, head_state = ops.toy_weights(dims, seed=0)
    result = student.run("train_epoch", batches=batches, encoder_state=encoder_state, head_state=head_state,
                         dims=dims, optimizer="sgd", lr=0.1, temperature=0.3)
    mean, encoder_after, head_after = reference_epoch(batches, encoder_state, head_state, dims, 0.1, 0.3)
    if not (_same_weights(result["encoder"], encoder_after) and _same_weights(result["head"], head_after)):
        seen = result["seen"]
        for (x_i, x_j), _ in batches:
            for name, view in (("x_i", x_i), ("x_j", x_j)):
                if not (len(seen) and all((seen == row).all(dim=1).any() for row in view)):
                    raise AssertionError(f"the encoder never saw the view {name}: both views of every batch go "
                                         "through f and g")
        counts = {k for k, (_, encoder_k, head_k) in enumerate(reference_steps(
            batches, encoder_state, head_state, dims, 0.1, 0.3), 1)
            if _same_weights(result["encoder"], encoder_k) and _same_weights(result["head"], head_k)}
        if counts:
            raise AssertionError(f"{len(batches)} batches need {len(batches)} optimizer steps; the weights are those "
                                 f"after {min(counts)}")
        _, encoder_acc, head_acc = reference_epoch(batches, encoder_state, head_state, dims, 0.1, 0.3, zero_grad=False)
        if _same_weights(result["encoder"], encoder_acc) and _same_weights(result["head"], head_acc):
            raise AssertionError("gradients accumulate across batches: call optimizer.zero_grad() before backward()")
        raise AssertionError("the weights after one epoch differ from Algorithm 1's: per batch, the loss of "
                             "head(encoder(x_i)) against head(encoder(x_j)), fresh gradients, one optimizer step")
    returned = result["returned"][0]
    assert math.isclose(returned, mean, rel_tol=1e-4, abs_tol=1e-5), (
        f"train_epoch returned {returned:.5f}, but the mean of the per-batch losses is {mean:.5f}")

    dims = [12, 16, 32, 8]
    encoder_state, head_state = ops.toy_weights(dims, seed=1)
    batches = ops.toy_batches(n_batches=4, n=16, seed=1)
    result = student.run("train_epoch", batches=batches, encoder_state=encoder_state, head_state=head_state,
                         dims=dims, optimizer="adam", lr=1e-2, temperature=0.5, epochs=30)
    before = _toy_loss(batches, encoder_state, head_state, dims, 0.5)
    after = _toy_loss(batches, result["encoder"], result["head"], dims, 0.5)
    assert after < 0.8 * before, f"30 epochs on a learnable problem took the loss only from {before:.3f} to {after:.3f}"


# --- linear_probe ------------------------------------------------------------------------------------

def linear_probe(student) -> None:
    """Frozen in every sense, judged by consequences: the encoder's weights and BatchNorm statistics unchanged (read
    by the grader), features that do not depend on the batch (eval mode), nothing learned that the frozen
    features do not hold; an accuracy that follows the labels it is given; and the encoder's eval mode kept."""
    probe = dict(freeze_bias=True, num_classes=4, epochs=50, lr=1e-2)
    train, test = ops.separable_batches(seed=1)
    weights = ops.probe_weights(seed=0)
    result = student.run("linear_probe", train=train, test=test, encoder_state=weights, **probe)
    for name, value in weights.items():
        assert torch.equal(result["state"][name], value), (
            f"the encoder's {name} changed during the probe (BatchNorm running statistics: use encoder.eval())")
    assert 0.9 <= result["accuracy"] <= 1.0, (
        f"on linearly separable features the accuracy should be close to 1, got {result['accuracy']:.3f}")

    one_class_each = student.run("linear_probe", train=ops.by_class(train), test=ops.by_class(test),
                                 encoder_state=weights, **probe)["accuracy"]
    assert one_class_each >= 0.9, (
        f"with one class per batch the accuracy fell to {one_class_each:.3f}: the features depend on the other images "
        "of their batch, which is what BatchNorm does in training mode; call encoder.eval() before extracting them")

    hidden_train, hidden_test = ops.hidden_channel_batches(seed=3)
    learned = student.run("linear_probe", train=hidden_train, test=hidden_test,
                          encoder_state=ops.hidden_channel_weights(seed=0), **probe)["accuracy"]
    assert learned < 0.5, (
        f"the frozen encoder's features hold nothing about these labels, yet the probe scored {learned:.3f}: the "
        "encoder was trained; only the linear classifier may learn (extract the features under torch.no_grad())")

    changed, expected = ops.relabelled(test, seed=4)
    # This call starts in eval mode: the mode must be the same afterwards (the visible test starts in train mode).
    # The mode is the student process's report: it catches an honest mistake, nothing more.
    in_eval = student.run("linear_probe", train=train, test=changed, encoder_state=weights, train_mode=False, **probe)
    assert not any(in_eval["training"]), (
        "the encoder was in eval mode before linear_probe and in training mode after: put it back in the mode it "
        "was in (encoder.train(was_training)), not always in training mode")
    got = in_eval["accuracy"]
    assert abs(got - expected) <= 0.1, (
        f"with {100 * (1 - expected):.0f} % of the test labels changed to another class, a classifier that finds "
        f"the classes scores about {expected:.2f} against them, but linear_probe returned {got:.3f}: return the "
        "share of test_loader's images whose predicted class equals their label")
