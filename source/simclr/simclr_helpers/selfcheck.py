"""Before you submit: checks of what the visible tests do not look at, run on your functions in this kernel.

Each item names a property of a correct component and, when it does not hold, the concept behind it. None of
them is graded here; the grader's hidden tests check these properties (and more) on other inputs.
"""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Callable

import torch

from . import checks
from .definitions import NOTEBOOK_IMPORTS, define, graded_cells, name_error_hint

Namespace = dict


def _rescaling(ns: Namespace) -> None:
    gen = torch.Generator().manual_seed(7)
    z_i, z_j = torch.randn(6, 16, generator=gen), torch.randn(6, 16, generator=gen)
    plain, rescaled = ns["nt_xent"](z_i, z_j, 0.5).item(), ns["nt_xent"](3 * z_i, 0.25 * z_j, 0.5).item()
    assert abs(plain - rescaled) < 1e-4, (
        f"nt_xent(3 z_i, z_j / 4) = {rescaled:.4f} but nt_xent(z_i, z_j) = {plain:.4f}: the loss compares directions "
        "(cosine similarities), so L2-normalise the embeddings (F.normalize(z, dim=1)) before the dot products")


def _rates(ns: Namespace) -> None:
    image = checks.uniform_image()
    views = checks.InKernel(ns).run("augment", image=image, n=500, normalize=False, seed=11)
    gray, jitter = checks.view_rates(views, image)
    assert abs(gray - 0.2) < 0.07, (
        f"{gray:.0%} of the views are gray: RandomGrayscale(p=0.2) makes about one view in five gray")
    assert abs(jitter - 0.8) < 0.07, (
        f"{jitter:.0%} of the colour views are colour-jittered: RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8) "
        "changes the colours of about four views in five")


class _GradientWatcher:
    """Wraps an optimizer; notices a step taken on gradients that are not those of the last backward pass alone."""

    def __init__(self, optimizer: torch.optim.Optimizer, params: list[torch.Tensor]):
        self._optimizer = optimizer
        self.params, self.accumulated = params, False
        self.fresh: dict[int, torch.Tensor] = {}
        for p in params:
            p.register_hook(lambda grad, p=p: self.fresh.__setitem__(id(p), grad.detach().clone()))

    def step(self, closure=None):
        for p in self.params:
            if p.grad is not None and id(p) in self.fresh and not torch.allclose(p.grad, self.fresh[id(p)]):
                self.accumulated = True
        self.fresh.clear()
        return self._optimizer.step(closure)

    def zero_grad(self, set_to_none: bool = True):
        self._optimizer.zero_grad(set_to_none=set_to_none)

    def __getattr__(self, name):
        return getattr(self._optimizer, name)


def _toy_epoch(ns: Namespace, lr: float) -> tuple[float, list[float], _GradientWatcher]:
    """train_epoch on a toy problem: what it returned, each batch's loss at the starting weights, the optimizer."""
    dims = [12, 6, 8, 4]
    encoder, head = checks.toy_models(*dims)
    params = list(encoder.parameters()) + list(head.parameters())
    watcher = _GradientWatcher(torch.optim.SGD(params, lr=lr), params)
    batches = checks.toy_batches(seed=5)
    with torch.no_grad():
        losses = [ns["nt_xent"](head(encoder(x_i)), head(encoder(x_j)), 0.5).item() for (x_i, x_j), _ in batches]
    returned = ns["train_epoch"](encoder, head, batches, watcher, temperature=0.5, device="cpu", progress=False)
    return returned, losses, watcher


def _fresh_gradients(ns: Namespace) -> None:
    _, _, watcher = _toy_epoch(ns, lr=0.1)
    assert not watcher.accumulated, (
        "a step used the gradients of earlier batches too: backward() adds to .grad, so clear the gradients "
        "(optimizer.zero_grad()) before each backward()")


def _mean_of_batches(ns: Namespace) -> None:
    returned, losses, _ = _toy_epoch(ns, lr=0.0)  # lr 0: the weights stay, so each batch's loss is known
    mean = sum(losses) / len(losses)
    assert math.isclose(float(returned), mean, rel_tol=1e-4), (
        f"train_epoch returned {float(returned):.4f}; the batch losses were {', '.join(f'{v:.4f}' for v in losses)} "
        f"(mean {mean:.4f}): return the mean of the per-batch losses over the whole epoch")


def _probe_leaves_statistics(ns: Namespace) -> None:
    train, test = checks.separable_batches(seed=2)
    encoder = checks.probe_encoder()
    encoder.train()
    before = checks.plain_state(encoder)
    ns["linear_probe"](encoder, train, test, num_classes=4, epochs=5, lr=1e-2, device="cpu", seed=0)
    changed = [name for name, value in checks.plain_state(encoder).items() if not torch.equal(value, before[name])]
    assert not changed, (
        f"the probe changed the encoder's {', '.join(changed)}: in training mode BatchNorm updates its running "
        "statistics on every batch it sees, so put the encoder in eval mode (encoder.eval()) before extracting features")


def standalone(notebook: str | Path = "simclr_lab.ipynb") -> None:
    """Define the saved notebook's cells as the grader does (``definitions.graded_cells``: the helpers your answer
    cells need from your other code cells, then the answer cells, their definitions only, after the imports of
    section 0) and run the visible tests on them. ``train_epoch`` is checked only if ``nt_xent`` passes: the grader
    checks it with the course's loss, so a problem of your loss is not one of your training loop."""
    path = Path(notebook)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: save the notebook and run this cell from its folder")
    namespace: Namespace = {"__name__": "__main__"}
    exec(NOTEBOOK_IMPORTS, namespace)
    left_out: dict[str, list[str]] = {}
    cell_errors: dict[str, str] = {}
    for label, source in graded_cells(json.loads(path.read_text())["cells"], tuple(checks.VISIBLE)):
        try:
            left_out[label] = define(source, namespace, label)
        except Exception as error:  # noqa: BLE001 - as in the grader: the cell keeps what it defined before
            cell_errors[label] = f"{type(error).__name__}: {error}"
    failures, failed = [], set()
    for component, check in checks.VISIBLE.items():
        if component == "train_epoch" and "nt_xent" in failed:
            continue
        try:
            check(checks.InKernel(namespace))
        except Exception as error:  # noqa: BLE001 - every component is reported
            failed.add(component)
            message = f"{type(error).__name__}: {error}"
            if component in cell_errors:
                message = f"its cell failed ({cell_errors[component]}); {message}"
            hint = name_error_hint(message, left_out, cell_errors)
            failures.append(f"{component}: {message}" + (f"; {hint}" if hint else ""))
    if failures:
        raise AssertionError("as the grader runs your cells (definitions only): " + " | ".join(failures))


ITEMS: dict[str, tuple[str, Callable[[Namespace], None]]] = {
    "nt_xent": ("gives the same loss for rescaled embeddings", _rescaling),
    "get_augmentations": ("makes about 20 % gray and 80 % colour-jittered views", _rates),
    "train_epoch": ("steps on fresh gradients, and returns the mean of the batch losses",
                    lambda ns: (_fresh_gradients(ns), _mean_of_batches(ns))),
    "linear_probe": ("leaves the encoder's BatchNorm statistics alone", _probe_leaves_statistics),
}


def _short(problem: str, width: int = 76) -> str:
    """A problem as lines of at most ``width`` characters, so that nbgrader's Validate shows it whole."""
    return "\n".join(textwrap.wrap(problem, width, initial_indent="- ", subsequent_indent="  ",
                                    break_long_words=False, break_on_hyphens=False))


def self_check(namespace: Namespace, notebook: str | Path | None = "simclr_lab.ipynb", strict: bool = False) -> bool:
    """Run every item on the functions of ``namespace`` (the notebook's ``globals()``); print one line each.

    Returns whether all passed; with ``strict`` (the notebook's cell) raises an AssertionError instead, whose first
    line is short and says what to do, and whose other lines (at most 76 characters) name each problem, so that
    nbgrader's Validate fails and shows them whole."""
    problems: list[tuple[str, str]] = []

    def report(status: str, component: str, text: str) -> None:
        print(f"{status:8} {component} {text}" if status == "ok" else f"{status:8} {text}")
        if status != "ok":
            problems.append((component, text))

    for component, (claim, check) in ITEMS.items():
        try:
            if component not in namespace:
                raise AssertionError(f"{component} is not defined: run its cell")
            check(namespace)
            report("ok", component, claim)
        except BaseException as error:  # noqa: BLE001 - a broken function is reported, the other items still run
            if "NotImplementedError" in f"{type(error).__name__}: {error}":
                report("not yet", component, f"{component}: the stub is not written yet")
            else:
                report("PROBLEM", component, f"{component} {claim}? {type(error).__name__}: {error}")
    if notebook is not None:
        try:
            standalone(notebook)
            print("ok       your answer cells pass the visible tests on their own, as the grader runs them")
        except FileNotFoundError as error:
            print(f"skipped  the answer cells on their own: {error}")
        except AssertionError as error:
            report("PROBLEM", "cells", str(error))
    if problems and strict:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise AssertionError(f"self-check: {count}, listed below: fix before you submit\n"
                             + "\n".join(_short(text) for _, text in problems))
    return not problems
