"""Cells of the lab notebook run on small stand-ins: the t-SNE's classes, the loss curve's dashed line, the
supervised baseline's labelled set and its one pass over the data per epoch (the red wall of 8.6)."""
from __future__ import annotations

import gc
import math
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import simclr_helpers as lab
from simclr_helpers import experiments, plots

NOTEBOOK = Path(__file__).resolve().parent.parent / "source" / "simclr" / "simclr_lab.ipynb"


def cell_source(marker: str) -> str:
    """The source of the one code cell of the lab notebook that contains ``marker``."""
    found = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells
             if c.cell_type == "code" and marker in c.source]
    assert len(found) == 1, f"{len(found)} code cells contain {marker!r}"
    return found[0]


class Recorder:
    """Stands in for a module: records the calls of the functions named in ``record``, the rest is the module's."""

    def __init__(self, module, **record):
        self.module, self.record, self.calls = module, record, {name: [] for name in record}

    def __getattr__(self, name):
        if name not in self.record:
            return getattr(self.module, name)

        def call(*args, **kwargs):
            self.calls[name].append((args, kwargs))
            return self.record[name](*args, **kwargs)
        return call


def run_cell(marker: str, switch_on: str = "", **namespace) -> dict:
    """Run the cell containing ``marker`` in ``namespace``; ``switch_on``: an optional exercise's RUN_... switch,
    set to True as the student would."""
    namespace.setdefault("timer", lab.Timer())
    source = cell_source(marker)
    if switch_on:
        assert f"{switch_on} = False" in source, f"no {switch_on} switch in the cell"
        source = source.replace(f"{switch_on} = False", f"{switch_on} = True")
    exec(source, namespace)
    return namespace


# ---------------------------------------------------------------- t-SNE (issue 11, item 1)

def test_tsne_plots_every_class_of_a_class_sorted_test_set():
    """The offline copy's test images come sorted by class: the plotted points must still cover all ten."""
    labels = torch.arange(10).repeat_interleave(200)            # 2,000 test images, class by class
    test_h = torch.stack([labels.float(), torch.randn(len(labels))], dim=1)   # column 0 tells a row's class
    features = {name: (None, None, test_h, labels) for name in ("SimCLR encoder", "random-init encoder")}
    fake_lab = Recorder(lab, tsne_2d=lambda h, seed=0: h[:, :2].numpy())
    fake_plots = Recorder(plots, plot_embeddings=lambda embeddings: None)
    preset = lab.PRESETS["cpu"]
    run_cell("lab.tsne_2d", lab=fake_lab, plots=fake_plots, features=features, losses=[4.0], preset=preset,
             test_y=labels)   # what the kNN cell before it leaves
    (embeddings,), _ = fake_plots.calls["plot_embeddings"][0]
    assert set(embeddings) == {"SimCLR encoder", "random-init encoder"}
    for name, (points, shown_labels) in embeddings.items():
        counts = np.bincount(shown_labels, minlength=10)
        assert len(shown_labels) == preset.tsne_points and counts.min() > 0, (
            f"{name}: the t-SNE shows classes {np.flatnonzero(counts).tolist()} only")
        assert counts.max() - counts.min() <= 1, f"{name}: classes unevenly sampled: {counts.tolist()}"
        assert np.array_equal(points[:, 0], shown_labels), "the points and their colours are different images"


def test_stratified_sample_takes_every_class_equally():
    labels = np.repeat(np.arange(4), [50, 3, 20, 7])
    chosen = lab.stratified_sample(labels, 10, seed=1)
    assert len(set(chosen.tolist())) == 10 and sorted(np.bincount(labels[chosen]).tolist()) == [2, 2, 3, 3]
    assert np.array_equal(lab.stratified_sample(labels, 10, seed=1), chosen), "not fixed by the seed"
    assert np.bincount(labels[lab.stratified_sample(labels, 24)]).tolist() == [7, 3, 7, 7], "a small class runs out"
    assert len(lab.stratified_sample(labels, 500)) == len(labels)


# ---------------------------------------------------------------- loss curve (issue 11, item 8)

def test_loss_curve_draws_the_dashed_line_the_text_speaks_of():
    plt.close("all")
    preset = lab.PRESETS["cpu"]
    run_cell("plots.plot_curves", plots=plots, losses=[4.6, 4.2, 4.0], preset=preset, math=math)
    (ax,) = plt.gcf().axes
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1, "no dashed line in the loss curve"
    assert np.allclose(dashed[0].get_ydata(), math.log(2 * preset.batch_size - 1))
    assert "log(2N - 1)" in dashed[0].get_label()
    plt.close("all")


# ---------------------------------------------------------------- supervised baseline (issue 11, item 7)

@pytest.fixture(scope="module")
def lab_data(cifar_dir):
    return lab.load_lab_data(lab.PRESETS["grading"], root=str(cifar_dir))


def test_probe_learns_from_the_labelled_images(lab_data):
    probe_images = lab_data.probe_train.dataset
    assert list(probe_images.indices) == list(lab_data.labelled.indices)
    assert lab_data.labelled.dataset is lab_data.train
    assert len(lab_data.labelled) == round(lab.PRESETS["grading"].probe_fraction * 50_000)


def test_supervised_baseline_learns_from_the_probes_labelled_images(lab_data):
    fake_lab = Recorder(lab, train_supervised=lambda *args, **kwargs: 0.5,
                        build_encoder=lambda name: torch.nn.Identity())
    fake_plots = Recorder(plots, show_results=lambda *args, **kwargs: None)
    preset = lab.PRESETS["cpu"]
    run_cell("lab.train_supervised(", switch_on="RUN_SUPERVISED", lab=fake_lab, plots=fake_plots, data=lab_data, preset=preset,
             RUN_EXERCISES=True, probe={"SimCLR encoder": 0.5}, device="cpu", SHOW_PROGRESS=False)
    (args, kwargs), = fake_lab.calls["train_supervised"]
    dataset = args[1] if len(args) > 1 else kwargs["dataset"]
    assert dataset.dataset is lab_data.train
    assert list(dataset.indices) == list(lab_data.probe_train.dataset.indices), (
        "the supervised model does not learn from the images (and labels) the linear probe learns from")


# ---------------------------------------------------------------- the red wall of 8.6 (issue 11, item 7)

def tiny_images(n: int = 64) -> Dataset:
    rng = np.random.default_rng(0)
    return lab.data.ArrayImageDataset(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10)


def test_progress_bar_iterates_its_iterable_once():
    class Counted:
        passes = 0

        def __iter__(self):
            Counted.passes += 1
            return iter(range(3))

    assert list(experiments.progress_bar(Counted(), disable=True)) == [0, 1, 2]
    assert Counted.passes == 1, "the progress bar starts a pass of its own (tqdm.auto's asyncio part)"


def test_supervised_baseline_makes_one_pass_over_its_data_per_epoch(monkeypatch):
    passes = {}
    real_iter = DataLoader.__iter__

    def counted(loader):
        passes[id(loader)] = passes.get(id(loader), 0) + 1
        return real_iter(loader)

    monkeypatch.setattr(DataLoader, "__iter__", counted)
    test_loader = DataLoader(experiments._with_transform(tiny_images(16), lab.get_eval_transform()), batch_size=8)
    lab.train_supervised(lab.build_encoder("small_cnn"), tiny_images(), test_loader, epochs=2, lr=1e-3,
                         batch_size=16, device="cpu", progress=True)
    assert sorted(passes.values()) == [1, 2], f"passes per loader: {sorted(passes.values())} (a pass starts workers)"


class CollectsGarbage(Dataset):
    """Images whose loading triggers a full garbage collection: what a long-running worker does sooner or later."""

    def __init__(self, base: Dataset):
        self.base, self.targets = base, base.targets

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        gc.collect()
        return self.base[index]


def test_supervised_baseline_leaves_no_worker_clean_up_to_other_processes(capfd, monkeypatch):
    """The red wall of 8.6 itself: with a progress bar kept in a reference cycle (as Jupyter's widget bar is), no
    "can only test a child process" from a DataLoader iterator freed in a worker of the next epoch."""
    class CycleBar(experiments.tqdm):   # the widget bar keeps itself alive in a cycle; tqdm.std does not
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.me = self

    monkeypatch.setattr(experiments, "tqdm", CycleBar)
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)   # print them, as a kernel does
    test_loader = DataLoader(experiments._with_transform(tiny_images(16), lab.get_eval_transform()), batch_size=8)
    gc.collect()
    gc.disable()   # collections happen in the workers only, as they may in a long notebook session
    try:
        lab.train_supervised(lab.build_encoder("small_cnn"), CollectsGarbage(tiny_images(32)), test_loader, epochs=2,
                             lr=1e-3, batch_size=16, device="cpu", workers=2, progress=False)
    finally:
        gc.enable()
        gc.collect()
    err = capfd.readouterr().err
    assert "can only test a child process" not in err and "can only join a child process" not in err, err[-2000:]


# ---------------------------------------------------------------- the student's path (issue 11, item 9)

def test_optional_exercises_are_off_and_ungraded_and_the_required_ones_graded():
    section, optional_sections, graded, switches = "", set(), {}, {}
    for cell in nbformat.read(NOTEBOOK, as_version=4).cells:
        if cell.cell_type == "markdown" and cell.source.startswith("### 8."):
            section = cell.source.splitlines()[0]
            if "Optional" in section:
                optional_sections.add(section)
        if cell.metadata.get("nbgrader", {}).get("grade") and cell.cell_type == "markdown":
            graded[cell.metadata.nbgrader["grade_id"]] = section
        if cell.cell_type == "code" and section in optional_sections:
            switches.update(re.findall(r"(?m)^(RUN_[A-Z0-9_]+) = (\w+)", cell.source))
    assert set(graded) == {"answer_augmentations", "answer_temperature", "answer_h_vs_z"}
    assert not set(graded.values()) & optional_sections, "an optional exercise has a graded answer"
    assert len(optional_sections) == 5 and switches and set(switches.values()) == {"False"}, switches


# ---------------------------------------------------------------- optional exercises switched off (issue 24, item 6)

@pytest.mark.parametrize("marker", ["RUN_BATCH_SIZE = False", "RUN_HEAD_VARIANTS = False", "RUN_SUPERVISED = False",
                                    "RUN_STL10 = False", "RUN_MOCO = False"])
def test_a_switched_off_exercise_draws_nothing_and_says_so_in_one_line(marker, capsys):
    """With its default switch (off), an optional exercise's cell draws no figure (it used to draw a zero-height
    axis with the baseline's value over the tick labels) and prints one line saying it is switched off."""
    plt.close("all")
    preset = lab.PRESETS["cpu"]
    run_cell(marker, lab=lab, plots=plots, preset=preset, RUN_EXERCISES=True, baseline={"probe": 0.41},
             probe={"SimCLR encoder": 0.43}, ProjectionHead=None, nn=torch.nn, exercise_run=None, device="cpu",
             SHOW_PROGRESS=False)
    lines = capsys.readouterr().out.strip().splitlines()
    assert plt.get_fignums() == [], "a switched-off exercise drew a figure"
    assert len(lines) == 1 and "switched off" in lines[0], lines


def test_results_chart_has_room_for_its_bars():
    """Two results or more get a chart whose axis has a real height; fewer get the table only."""
    plt.close("all")
    plots.show_results({"a": 0.4, "b": None}, title="one result")
    assert plt.get_fignums() == []
    plots.show_results({"a": 0.4, "b": 0.5}, title="two results")
    (number,) = plt.get_fignums()
    fig = plt.figure(number)
    fig.canvas.draw()
    assert fig.axes[0].get_window_extent().height > 0.3 * fig.dpi, "the chart's axis has (almost) no height"
    plt.close("all")
