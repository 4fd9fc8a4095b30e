"""The visible checks of the five components, and the probes ("ops") that run your code for them.

A check never looks at your objects directly. It asks an *op* to run one of your functions on inputs the
check chose and to hand back plain data: tensors, numbers, strings. Then it compares that data with what a
correct component must give. In your notebook the ops run in your kernel (``checks.visible("nt_xent",
globals())``); the grader runs the same ops in a separate process, reads the weights your function changed from
memory it owns, and makes its verdicts outside that process, from the data alone.
"""
from __future__ import annotations

import math
import random
import textwrap
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from . import wire

Namespace = dict[str, Any]


class StudentCodeError(Exception):
    """Your code raised, returned the wrong kind of object, or is missing; the message says which."""


# --- turning what student code returns into plain data ------------------------------------------------

def plain_tensor(value: Any, what: str) -> torch.Tensor:
    """A detached CPU copy of ``value`` as an exact ``torch.Tensor`` (no subclass, no custom methods)."""
    if not isinstance(value, torch.Tensor):
        raise StudentCodeError(f"{what} must be a torch.Tensor, got {type(value).__name__}")
    return torch.Tensor.as_subclass(value, torch.Tensor).detach().cpu().clone()


def plain_float(value: Any, what: str) -> float:
    """``value`` as a Python float, if it is a Python or NumPy float (not a tensor, not a custom object)."""
    if not isinstance(value, (float, np.floating)) or isinstance(value, bool):
        raise StudentCodeError(f"{what} must be a Python float, got {type(value).__name__}")
    return float.__float__(float(value))


def plain_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: plain_tensor(value, name) for name, value in module.state_dict().items()}


roundtrip = wire.roundtrip


def _component(namespace: Namespace, name: str) -> Any:
    if name not in namespace:
        raise StudentCodeError(f"{name} is not defined: run (or fix) the cell that defines it")
    return namespace[name]


def _call(what: str, fn: Callable, *args, **kwargs) -> Any:
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise StudentCodeError(f"{what} raised NotImplementedError: the stub is not written yet") from None
    except StudentCodeError:
        raise
    except BaseException as error:  # SystemExit and KeyboardInterrupt included: they are the student's too
        raise StudentCodeError(f"{what} raised {type(error).__name__}: {error}") from None


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- the ops: run student code on given inputs, return plain data ------------------------------------

def op_augment(ns: Namespace, image: torch.Tensor, n: int, normalize: bool, seed: int) -> torch.Tensor:
    """``n`` views of one uint8 (H, W, 3) image through ``get_augmentations(normalize)``, stacked."""
    from PIL import Image
    seed_all(seed)
    pipeline = _call("get_augmentations", _component(ns, "get_augmentations"), normalize=normalize)
    if not callable(pipeline):
        raise StudentCodeError(f"get_augmentations must return a callable transform, got {type(pipeline).__name__}")
    picture = Image.fromarray(image.numpy())
    views = [plain_tensor(_call("the augmentation pipeline", pipeline, picture), "a view") for _ in range(n)]
    if len({tuple(v.shape) for v in views}) > 1:
        raise StudentCodeError(f"views of one image have different shapes: {sorted({tuple(v.shape) for v in views})}")
    return torch.stack(views)


def op_head(ns: Namespace, in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool, x: torch.Tensor,
            grad_output: torch.Tensor, seed: int, train: bool = True) -> dict:
    """Build ``ProjectionHead``, run it on ``x``, backpropagate ``sum(output * grad_output)``.

    Returns the output, every parameter and its gradient, and the trace of leaf-module calls (name, kind,
    input, output) so that the checker can redo the computation itself.
    """
    torch.manual_seed(seed)
    head = _call("ProjectionHead(...)", _component(ns, "ProjectionHead"), in_dim, hidden_dim, out_dim,
                 batch_norm=batch_norm)
    if not isinstance(head, nn.Module):
        raise StudentCodeError(f"ProjectionHead must be an nn.Module, got {type(head).__name__}")
    trace: list[dict] = []
    hooks = []
    for name, module in head.named_modules():
        if next(module.children(), None) is None and name:
            def record(module, inputs, output, name=name):
                trace.append({"name": name, "kind": type(module).__name__,
                              "input": plain_tensor(inputs[0], f"the input of {name}"),
                              "output": plain_tensor(output, f"the output of {name}"),
                              "eps": float(getattr(module, "eps", 0.0))})
            hooks.append(module.register_forward_hook(record))
    head.train(train)
    output = _call("ProjectionHead.forward", head, x.clone())
    for hook in hooks:
        hook.remove()
    result_output = plain_tensor(output, "the head's output")
    if output.requires_grad and output.shape == grad_output.shape:
        _call("backward through the head", (output * grad_output).sum().backward)
    return {"output": result_output, "trace": trace,
            "params": {name: plain_tensor(p, name) for name, p in head.named_parameters()},
            "grads": {name: plain_tensor(p.grad, name) for name, p in head.named_parameters() if p.grad is not None},
            "buffers": {name: plain_tensor(b, name) for name, b in head.named_buffers()}}


def op_nt_xent(ns: Namespace, z_i: torch.Tensor, z_j: torch.Tensor, temperature: float,
               with_grad: bool = False) -> dict:
    """``nt_xent(z_i, z_j, temperature)``; with ``with_grad`` also the gradients reaching z_i and z_j."""
    a, b = z_i.clone().requires_grad_(with_grad), z_j.clone().requires_grad_(with_grad)
    loss = _call("nt_xent", _component(ns, "nt_xent"), a, b, temperature)
    result = {"loss": plain_tensor(loss, "the loss")}
    if with_grad:
        if not loss.requires_grad or loss.dim() != 0:
            raise StudentCodeError("the loss is not a scalar that depends on z_i and z_j (no backward possible)")
        _call("loss.backward()", loss.backward)
        for key, leaf in (("grad_i", a), ("grad_j", b)):
            result[key] = plain_tensor(leaf.grad if leaf.grad is not None else torch.zeros_like(leaf), key)
    return result


class _RecordingLinear(nn.Linear):
    """A linear encoder that remembers every input it saw."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return super().forward(x)


def toy_models(in_dim: int, rep_dim: int, hidden_dim: int, out_dim: int) -> tuple[nn.Module, nn.Module]:
    """The encoder and head the training checks use: no BatchNorm, so any batching of the views is equivalent."""
    encoder = _RecordingLinear(in_dim, rep_dim)
    head = nn.Sequential(nn.Linear(rep_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))
    return encoder, head


def _watch_here(call: Callable[[], dict], modules: dict[str, nn.Module]) -> tuple[dict, dict[str, dict]]:
    return call(), {name: plain_state(module) for name, module in modules.items()}


# How an op calls student code that changes the modules it is given: ``WATCH(call, modules)`` returns what
# ``call()`` returns and the modules' state afterwards. In the notebook that is a plain call; in the grader's
# student process the modules' tensors are placed in memory the grader owns and reads itself (the state in the
# reply is then empty and ignored).
WATCH: Callable[[Callable[[], dict], dict[str, nn.Module]], tuple[dict, dict[str, dict]]] = _watch_here
# op -> {result key: the input that holds that module's starting state}: the modules WATCH hands over
WATCHED = {"train_epoch": {"encoder": "encoder_state", "head": "head_state"},
           "linear_probe": {"state": "encoder_state"}}


def op_train_epoch(ns: Namespace, batches: list, encoder_state: dict, head_state: dict, dims: list[int],
                   optimizer: str, lr: float, temperature: float, epochs: int = 1) -> dict:
    """Run ``train_epoch`` ``epochs`` times on fixed batches of views ((x_i, x_j), labels) from given weights.

    Returns the weights after, what it returned, and (as this process counted them: the notebook's visible test
    and the grader's messages use them, no verdict of the grader does) the optimizer steps and the inputs the
    encoder saw."""
    encoder, head = toy_models(*dims)
    encoder.load_state_dict(encoder_state)
    head.load_state_dict(head_state)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(params, lr=lr) if optimizer == "sgd" else torch.optim.Adam(params, lr=lr)
    steps = [0]
    optimizer.register_step_post_hook(lambda *_: steps.__setitem__(0, steps[0] + 1))
    loader = [((x_i.clone(), x_j.clone()), labels.clone()) for (x_i, x_j), labels in batches]
    train_epoch = _component(ns, "train_epoch")

    def call() -> dict:
        returned = [plain_float(_call("train_epoch", train_epoch, encoder, head, loader, optimizer,
                                      temperature=temperature, device="cpu", progress=False), "train_epoch's result")
                    for _ in range(epochs)]
        return {"returned": returned, "steps": int(steps[0]),
                "seen": torch.cat(encoder.seen) if encoder.seen else torch.empty(0)}

    data, states = WATCH(call, {"encoder": encoder, "head": head})
    return {**data, "encoder": states["encoder"], "head": states["head"]}


class _NoGradientPastHere(torch.autograd.Function):
    """The identity, whose backward refuses: a probe must not backpropagate into the frozen encoder."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        raise StudentCodeError("a gradient reached the encoder: extract the features under torch.no_grad() "
                               "(the encoder is frozen; only the linear classifier learns)")


class _Frozen(nn.Module):
    def forward(self, x):
        return _NoGradientPastHere.apply(x)


def probe_encoder() -> nn.Module:
    """The encoder the probe checks freeze: a 1x1 convolution, BatchNorm (running statistics), flatten; no
    gradient may pass back through it."""
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), _Frozen(), nn.Flatten())


def op_linear_probe(ns: Namespace, train: list, test: list, encoder_state: dict, freeze_bias: bool,
                    num_classes: int, epochs: int, lr: float, train_mode: bool = True) -> dict:
    """``linear_probe`` on a given encoder (in train mode, or eval mode without ``train_mode``); returns the
    accuracy, the encoder's state after and the train/eval mode of each of its modules after (``training``; as
    this process reports it: the grader's checks of the mode catch honest mistakes, nothing else)."""
    encoder = probe_encoder()
    encoder.load_state_dict(encoder_state)
    encoder.train(train_mode)
    if freeze_bias:
        encoder[0].bias.requires_grad_(False)
    copy_of = lambda batches: [(x.clone(), y.clone()) for x, y in batches]
    probe = _component(ns, "linear_probe")

    def call() -> dict:
        accuracy = _call("linear_probe", probe, encoder, copy_of(train), copy_of(test), num_classes=num_classes,
                         epochs=epochs, lr=lr, device="cpu", seed=0)
        return {"accuracy": plain_float(accuracy, "linear_probe's result")}

    data, states = WATCH(call, {"state": encoder})
    return {**data, "state": states["state"], "training": [bool(m.training) for m in encoder.modules()]}


def op_training_run(ns: Namespace, preset: dict, data_dir: str, device: str, seed: int) -> dict:
    """SimCLR with the student's augmentations, head, loss and ``train_epoch`` on the course's encoder.

    ``preset`` holds the fields of a :class:`Preset` (the budget); returns the trained encoder's weights and the
    epoch losses, so that the checker probes the encoder itself.
    """
    from .encoders import build_encoder
    from .experiments import load_lab_data, pair_loader, pretrain
    from .runtime import Preset
    budget = Preset(**preset)
    seed_all(seed)
    augment = _call("get_augmentations", _component(ns, "get_augmentations"), normalize=True)
    data = load_lab_data(budget, seed=seed, root=data_dir)
    loader = pair_loader(data.pretrain, augment, budget.batch_size, budget.workers, seed)
    encoder = build_encoder(budget.encoder).to(device)
    head = _call("ProjectionHead(...)", _component(ns, "ProjectionHead"), encoder.out_dim, 512, 128).to(device)
    losses = _call("training with train_epoch", pretrain, encoder, head, loader, _component(ns, "train_epoch"),
                   budget.epochs, budget.lr, budget.temperature, device, False)
    return {"encoder": plain_state(encoder), "losses": [plain_float(v, "train_epoch's result") for v in losses]}


OPS: dict[str, Callable[..., Any]] = {
    "augment": op_augment, "head": op_head, "nt_xent": op_nt_xent, "train_epoch": op_train_epoch,
    "linear_probe": op_linear_probe, "training_run": op_training_run,
}


class InKernel:
    """Runs the ops in this process on a namespace (the notebook's ``globals()``); results cross as data."""

    def __init__(self, namespace: Namespace):
        self.namespace = namespace

    def run(self, op: str, **kwargs) -> Any:
        return roundtrip(OPS[op](self.namespace, **roundtrip(kwargs)))


# --- shared inputs ----------------------------------------------------------------------------------

def random_image(seed: int, size: int = 32) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def uniform_image() -> torch.Tensor:
    """A 32x32 image of one colour: any view that is not gray and differs from it was colour-jittered."""
    return torch.tensor([200, 60, 30], dtype=torch.uint8).expand(32, 32, 3).contiguous()


def view_rates(views: torch.Tensor, image: torch.Tensor) -> tuple[float, float]:
    """For views (n, 3, H, W in [0, 1]) of ``uniform_image()``: the share of gray views, and the share of the
    colour views that were colour-jittered."""
    original = image.permute(2, 0, 1).float() / 255
    gray = (views[:, 0] == views[:, 1]).flatten(1).all(1) & (views[:, 1] == views[:, 2]).flatten(1).all(1)
    jittered = ~gray & ((views - original).abs().flatten(1).amax(1) > 1e-6)
    return gray.float().mean().item(), jittered.sum().item() / max(1, int((~gray).sum()))


def toy_batches(n_batches: int = 3, n: int = 8, d: int = 12, seed: int = 0) -> list:
    """Pairs of noisy views of random points: ((x_i, x_j), labels) batches a tiny encoder can learn from."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n_batches):
        x = torch.randn(n, d, generator=gen)
        views = (x + 0.1 * torch.randn(n, d, generator=gen), x + 0.1 * torch.randn(n, d, generator=gen))
        batches.append((views, torch.zeros(n, dtype=torch.long)))
    return batches


def toy_weights(dims: list[int], seed: int) -> tuple[dict, dict]:
    torch.manual_seed(seed)
    encoder, head = toy_models(*dims)
    return plain_state(encoder), plain_state(head)


def separable_batches(n: int = 400, seed: int = 0) -> tuple[list, list]:
    """Images whose mean colour encodes one of 4 classes: linearly separable through the probe encoder."""
    x, labels = _images(n, 3 * torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]]), seed)
    return _batches(x, labels, 0, 300), _batches(x, labels, 300, n)


def hidden_channel_batches(n: int = 400, seed: int = 0) -> tuple[list, list]:
    """Images whose class is in the blue channel alone, which :func:`hidden_channel_weights` makes the probe
    encoder ignore: only a probe that trains the encoder can tell these classes apart."""
    centres = torch.zeros(4, 3)
    centres[:, 2] = torch.tensor([-4.5, -1.5, 1.5, 4.5])
    x, labels = _images(n, centres, seed)
    return _batches(x, labels, 0, 300), _batches(x, labels, 300, n)


def _images(n: int, centres: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=gen)
    return centres[labels][:, :, None, None] + 0.3 * torch.randn(n, 3, 2, 2, generator=gen), labels


def _batches(x: torch.Tensor, labels: torch.Tensor, start: int, end: int, size: int = 50) -> list:
    return [(x[i:min(i + size, end)], labels[i:min(i + size, end)]) for i in range(start, end, size)]


def by_class(batches: list) -> list:
    """The same images and labels, one class per batch: features that depend on the batch (BatchNorm in training
    mode) lose what tells the classes apart."""
    x, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    return [(x[labels == c], labels[labels == c]) for c in labels.unique().tolist()]


def relabelled(batches: list, seed: int, share: tuple[float, float] = (0.25, 0.5)) -> tuple[list, float]:
    """The same images with the labels of a share of them (drawn in ``share`` by ``seed``) changed to another class,
    and the accuracy against those labels of a classifier that finds every image's class: a probe's accuracy must
    follow the labels it is given, which it cannot know without classifying the images."""
    gen = torch.Generator().manual_seed(seed)
    x, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    fraction = share[0] + (share[1] - share[0]) * torch.rand(1, generator=gen).item()
    changed = torch.randperm(len(labels), generator=gen)[:round(fraction * len(labels))]
    given = labels.clone()
    given[changed] = (labels[changed] + torch.randint(1, 4, (len(changed),), generator=gen)) % 4
    expected = (given == labels).float().mean().item()
    return _batches(x, given, 0, len(given)), expected


def probe_weights(seed: int) -> dict:
    torch.manual_seed(seed)
    return plain_state(probe_encoder())


def hidden_channel_weights(seed: int) -> dict:
    """Probe-encoder weights that ignore the blue channel (see :func:`hidden_channel_batches`)."""
    weights = probe_weights(seed)
    weights["0.weight"][:, 2] = 0
    return weights


# --- the visible checks (each test cell of the notebook calls one) ----------------------------------

# Each visible check draws its inputs from ``seed``: the notebook uses 0, the grader another fixed seed, so
# answers hard-coded for the notebook's inputs do not pass.

def check_get_augmentations(student, seed: int = 0) -> None:
    """Shape, dtype, two different views of one image, values in [0, 1], normalisation subtracts the mean."""
    views = student.run("augment", image=random_image(seed), n=2, normalize=False, seed=seed)
    assert views.shape == (2, 3, 32, 32), f"a view must have shape (3, 32, 32), got {tuple(views.shape[1:])}"
    assert views.dtype == torch.float32, f"a view must be float32 (ToTensor), got {views.dtype}"
    assert not torch.equal(views[0], views[1]), "two calls on the same image gave the same view: is every step random?"
    assert views.min() >= 0 and views.max() <= 1, "with normalize=False the values must stay in [0, 1]"
    normalised = student.run("augment", image=random_image(seed), n=1, normalize=True, seed=seed)
    assert normalised.shape == (1, 3, 32, 32), f"with normalize=True a view has shape {tuple(normalised.shape[1:])}"
    assert normalised.min() < 0, "with normalize=True the CIFAR-10 mean must be subtracted (some values < 0)"


def _head_output(student, batch_norm: bool, x: torch.Tensor, train: bool = True) -> torch.Tensor:
    result = student.run("head", in_dim=32, hidden_dim=64, out_dim=16, batch_norm=batch_norm, x=x,
                         grad_output=torch.zeros(len(x), 16), seed=0, train=train)
    return result["output"]


def check_projection_head(student, seed: int = 0) -> None:
    """Output shapes; in training mode each output depends on the rest of the batch exactly when BatchNorm is on."""
    gen = torch.Generator().manual_seed(seed)
    x, other = torch.randn(8, 32, generator=gen), torch.randn(8, 32, generator=gen)
    changed = torch.cat([x[:1], other[1:]])
    for batch_norm in (True, False):
        z = _head_output(student, batch_norm, x)
        assert z.shape == (8, 16), f"batch_norm={batch_norm}: expected z of shape (8, 16), got {tuple(z.shape)}"
        depends = not torch.allclose(z[0], _head_output(student, batch_norm, changed)[0], atol=1e-6)
        assert depends == batch_norm, (
            f"batch_norm={batch_norm}, but in training mode the head {'uses' if depends else 'does not use'} "
            "batch statistics: BatchNorm1d must be there exactly when batch_norm=True")


def check_nt_xent(loss_fn: Callable, seed: int = 0) -> None:
    """A scalar, zero for a single pair, symmetric, and a value worked out by hand."""
    gen = torch.Generator().manual_seed(seed)
    z_i, z_j = torch.randn(6, 16, generator=gen), torch.randn(6, 16, generator=gen)
    loss = loss_fn(z_i, z_j, 0.5)
    assert loss.dim() == 0, f"nt_xent must return a scalar (0-d) tensor, got shape {tuple(loss.shape)}"
    assert math.isfinite(loss.item()), f"the loss is {loss.item()}"
    one = loss_fn(z_i[:1], z_j[:1], 0.5).item()
    assert abs(one) < 1e-6, f"with a single pair there are no negatives, so the loss must be 0; got {one:.6f}"
    swapped = loss_fn(z_j, z_i, 0.5).item()
    assert abs(loss.item() - swapped) < 1e-5, f"nt_xent(z_i, z_j)={loss.item():.6f} but nt_xent(z_j, z_i)={swapped:.6f}"
    draw = random.Random(seed)
    cases = ((4, 0.5), (8, 0.1)) if seed == 0 else [(draw.randint(2, 12), draw.choice([0.3, 0.4, 0.7, 1.0])) for _ in "ab"]
    rotation = torch.linalg.qr(torch.randn(32, 32, generator=gen))[0] if seed else torch.eye(32)
    for n, tau in cases:
        e = torch.eye(n, 32) @ rotation
        expected = math.log(1 + (2 * n - 2) * math.exp(-1 / tau))
        got = loss_fn(e, e.clone(), tau).item()
        assert abs(got - expected) < 1e-5, (
            f"orthonormal pairs, N={n}, tau={tau}: expected {expected:.6f}, got {got:.6f}\n"
            + textwrap.fill(_likely_cause(got, n, tau), 76, break_long_words=False, break_on_hyphens=False))


def _likely_cause(got: float, n: int, tau: float) -> str:
    """What a wrong value of the orthonormal-pairs case most likely means (it matches a known mistake's value)."""
    right = math.log(1 + (2 * n - 2) * math.exp(-1 / tau))
    known = {
        math.log(1 + (2 * n - 2) * math.exp(-tau)): "the similarities look multiplied by the temperature: divide "
                                                    "them by it (sim / tau)",
        math.log(2 + (2 * n - 2) * math.exp(-1 / tau)): "each anchor's similarity with itself looks included among "
                                                        "the negatives: exclude the diagonal",
        2 * right: "the value is twice the right one: average over all 2N anchors (the sum divided by 2N, not N)",
        right / 2: "the value is half the right one: average over all 2N anchors, both views as anchors",
    }
    for value, cause in known.items():
        if abs(got - value) < 1e-5:
            return cause
    return "is the self-similarity excluded, tau dividing the similarities, and the mean taken over all 2N anchors?"


def check_train_epoch(student, seed: int = 0) -> None:
    """Returns a float (the mean loss), one optimizer step per batch, every weight updated."""
    dims = [12, 6, 8, 4]
    encoder_state, head_state = toy_weights(dims, seed=seed)
    result = student.run("train_epoch", batches=toy_batches(seed=seed), encoder_state=encoder_state, head_state=head_state,
                         dims=dims, optimizer="sgd", lr=0.1, temperature=0.5)
    mean = result["returned"][0]
    assert math.isfinite(mean) and mean > 0, f"the mean loss should be a positive number, got {mean}"
    assert result["steps"] == 3, f"3 batches need 3 optimizer steps, counted {result['steps']}"
    for part, before in (("encoder", encoder_state), ("head", head_state)):
        for name, value in before.items():
            assert not torch.equal(value, result[part][name]), f"the {part}'s {name} did not change"


def check_linear_probe(student, seed: int = 0) -> None:
    """Accuracy near 1 on linearly separable features, an accuracy that follows the labels it is given, and a frozen
    encoder: its weights unchanged, and nothing learned that its frozen features do not hold."""
    train, test = separable_batches(seed=seed)
    weights = probe_weights(seed=seed)
    probe = dict(freeze_bias=False, num_classes=4, epochs=100, lr=1e-2)
    result = student.run("linear_probe", train=train, test=test, encoder_state=weights, **probe)
    accuracy = result["accuracy"]
    assert 0.9 <= accuracy <= 1.0, f"on linearly separable features the accuracy should be close to 1, got {accuracy:.3f}"
    for name in ("0.weight", "0.bias", "1.weight", "1.bias"):
        assert torch.equal(result["state"][name], weights[name]), f"the encoder's {name} changed: do not train it"
    assert all(result["training"]), (
        "the encoder was in training mode before linear_probe and is in eval mode after:\n"
        "put it back in the mode it was in (was_training = encoder.training, then\n"
        "encoder.train(was_training) at the end; lab.extract_features does that)")
    changed, expected = relabelled(test, seed=seed + 100)
    got = student.run("linear_probe", train=train, test=changed, encoder_state=weights, **probe)["accuracy"]
    assert abs(got - expected) <= 0.1, (
        f"with {100 * (1 - expected):.0f} % of the test labels changed to another class, a classifier that finds "
        f"the classes scores about {expected:.2f} against them, but linear_probe returned {got:.3f}: return the "
        "share of test_loader's images whose predicted class equals their label")
    hidden_train, hidden_test = hidden_channel_batches(seed=seed + 200)
    learned = student.run("linear_probe", train=hidden_train, test=hidden_test,
                          encoder_state=hidden_channel_weights(seed), **probe)["accuracy"]
    assert learned < 0.5, (
        f"the frozen encoder's features hold nothing about these labels, yet the probe scored {learned:.3f}: the "
        "encoder was trained; only the linear classifier may learn (extract the features under torch.no_grad())")


class _LossOf:
    """``nt_xent`` as a plain function of tensors, run through the ops."""

    def __init__(self, student):
        self.student = student

    def __call__(self, z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> torch.Tensor:
        return self.student.run("nt_xent", z_i=z_i, z_j=z_j, temperature=temperature)["loss"]

    def value_and_grad(self, z_i, z_j, temperature):
        result = self.student.run("nt_xent", z_i=z_i, z_j=z_j, temperature=temperature, with_grad=True)
        return result["loss"], result["grad_i"], result["grad_j"]


def loss_of(student) -> _LossOf:
    return _LossOf(student)


def check_nt_xent_of(student, seed: int = 0) -> None:
    """``check_nt_xent`` on the student's ``nt_xent``, run through the ops."""
    check_nt_xent(loss_of(student), seed)


VISIBLE: dict[str, Callable[..., None]] = {
    "get_augmentations": check_get_augmentations,
    "ProjectionHead": check_projection_head,
    "nt_xent": check_nt_xent_of,
    "train_epoch": check_train_epoch,
    "linear_probe": check_linear_probe,
}


def visible(component: str, namespace: Namespace) -> None:
    """Run the visible checks of one component on the notebook's ``globals()``; an AssertionError says what failed."""
    try:
        VISIBLE[component](InKernel(namespace))
    except StudentCodeError as error:
        raise AssertionError(str(error)) from None
    print(f"{component}: visible tests passed")
