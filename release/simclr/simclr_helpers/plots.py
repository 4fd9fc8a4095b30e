"""The lab's figures: augmented views, temperature, loss curves, t-SNE, retrieval, experiment results."""
from __future__ import annotations

from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.utils.data import Dataset

from .data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD


def to_image(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A (3, H, W) tensor, normalised or not, as an (H, W, 3) array in [0, 1] for ``imshow``."""
    if not isinstance(x, torch.Tensor):
        return np.asarray(x)
    x = x.detach().float().cpu()
    if x.min() < 0 or x.max() > 1:  # undo the CIFAR-10 normalisation
        x = x * torch.tensor(CIFAR10_STD)[:, None, None] + torch.tensor(CIFAR10_MEAN)[:, None, None]
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def show_augmentations(dataset: Dataset, augment: Callable, indices: Sequence[int], n_views: int = 5) -> None:
    """One row per image: the original, then ``n_views`` independent draws of ``augment``."""
    fig, axes = plt.subplots(len(indices), n_views + 1, figsize=(1.6 * (n_views + 1), 1.7 * len(indices)),
                             squeeze=False)
    for row, index in zip(axes, indices):
        image, label = dataset[index]
        row[0].imshow(to_image(image))
        row[0].set_title(CIFAR10_CLASSES[label], fontsize=9)
        for ax in row[1:]:
            ax.imshow(to_image(augment(image)))
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 1].set_title("views t(x) ->", fontsize=9, loc="left")
    fig.tight_layout()
    plt.show()


def show_temperature_effect(similarities: Sequence[float], temperatures: Sequence[float],
                            positive: int = 0) -> None:
    """Softmax over one anchor's cosine similarities at several temperatures; the positive is drawn in red."""
    s = torch.tensor(similarities)
    fig, axes = plt.subplots(1, len(temperatures), figsize=(3.2 * len(temperatures), 2.8), sharey=True)
    colours = ["tab:red" if k == positive else "tab:blue" for k in range(len(s))]
    for ax, tau in zip(axes, temperatures):
        p = torch.softmax(s / tau, dim=0)
        ax.bar(range(len(s)), p.numpy(), color=colours)
        ax.set_title(f"tau = {tau}:  p(positive) = {p[positive]:.2f}", fontsize=9)
        ax.set_xlabel("candidate k (red: positive)")
    axes[0].set_ylabel("softmax probability")
    fig.tight_layout()
    plt.show()


def plot_curves(curves: dict[str, Sequence[float]], xlabel: str = "epoch", ylabel: str = "NT-Xent loss",
                title: str = "", levels: dict[str, float] | None = None) -> None:
    """Line plot of named series (e.g. the loss per epoch of several runs); ``levels`` are named values drawn
    as dashed horizontal lines."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for name, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
    for name, value in (levels or {}).items():
        ax.axhline(value, color="gray", linestyle="--", label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plt.show()


def plot_embeddings(embeddings: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Side-by-side 2-D scatter plots (e.g. t-SNE), points coloured by CIFAR-10 class."""
    fig, axes = plt.subplots(1, len(embeddings), figsize=(5.2 * len(embeddings), 4.6), squeeze=False)
    for ax, (title, (points, labels)) in zip(axes[0], embeddings.items()):
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], marker="o", ls="", color=scatter.cmap(scatter.norm(k))) for k in range(10)]
    fig.legend(handles, CIFAR10_CLASSES, loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    plt.show()


def show_retrieval(test_set: Dataset, train_set: Dataset, query_indices: Sequence[int],
                   neighbour_indices: torch.Tensor, title: str = "") -> None:
    """One row per query image (left), followed by its nearest training images; green titles share its class."""
    k = neighbour_indices.shape[1]
    fig, axes = plt.subplots(len(query_indices), k + 1, figsize=(1.5 * (k + 1), 1.65 * len(query_indices)),
                             squeeze=False)
    for row, query, neighbours in zip(axes, query_indices, neighbour_indices.tolist()):
        image, label = test_set[query]
        row[0].imshow(to_image(image))
        row[0].set_title(f"query: {CIFAR10_CLASSES[label]}", fontsize=8, fontweight="bold")
        for ax, index in zip(row[1:], neighbours):
            image, other = train_set[index]
            ax.imshow(to_image(image))
            ax.set_title(CIFAR10_CLASSES[other], fontsize=8, color="green" if other == label else "red")
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()


def show_results(results: dict[str, float | None], title: str, metric: str = "linear-probe accuracy",
                 switched_off: bool = False) -> None:
    """A table and a bar chart of one experiment's results (``None``: the run was skipped).

    ``switched_off``: the exercise's ``RUN_...`` switch is off; one line says so and nothing is drawn. A chart
    needs two results to compare: with fewer, only the table is printed.
    """
    if switched_off:
        print(f"{title}: switched off (set the RUN_... switch at the top of this cell to True to run it).")
        return
    width = max(len(name) for name in results) + 2
    print(f"{title}\n{'setting':<{width}}{metric}")
    for name, value in results.items():
        print(f"{name:<{width}}{'skipped' if value is None else f'{value:.2%}'}")
    done = {name: value for name, value in results.items() if value is not None}
    if len(done) < 2:
        return
    fig, ax = plt.subplots(figsize=(5.5, 1.2 + 0.45 * len(done)))
    ax.barh(list(done), [100 * v for v in done.values()], color="tab:blue")
    for y, value in enumerate(done.values()):
        ax.text(100 * value, y, f" {value:.1%}", va="center", fontsize=8)
    ax.set_xlabel(f"{metric} (%)")
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_title(title)
    fig.tight_layout()
    plt.show()
