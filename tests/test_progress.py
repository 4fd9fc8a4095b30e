"""Progress of the long runs (issue 24, item 5): a bar with the time left while a run goes, in a real Jupyter
kernel, and in the saved notebook one plain line per run: no widget, no bar frozen at "0%"."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "source" / "simclr"

SETUP = f"""
import sys
sys.path[:0] = [{str(SOURCE)!r}, {str(ROOT)!r}]
import dataclasses
import numpy as np
import simclr_helpers as lab
import reference
from simclr_helpers.experiments import LabData, _with_transform, eval_loader

images = np.random.default_rng(0).integers(0, 256, (80, 32, 32, 3), dtype=np.uint8)
train = lab.data.ArrayImageDataset(images, np.arange(80) % 10)
evaluation = _with_transform(train, lab.get_eval_transform())
labelled = lab.balanced_subset(train, 0.5)
data = LabData(train=train, test=train, pretrain=labelled, labelled=labelled,
               probe_train=eval_loader(evaluation, batch_size=16), probe_test=eval_loader(evaluation, batch_size=16))
preset = dataclasses.replace(lab.PRESETS["grading"], batch_size=16, experiment_epochs=2, experiment_fraction=0.5,
                             probe_epochs=2, workers=0)
head = lambda d: reference.ProjectionHead(d, d, 32)
"""

CELLS = {   # what each cell runs: the exercise run, the main pretraining, the supervised baseline
    "SimCLR run": """
run = lab.simclr_run(data, reference.get_augmentations(), head, reference.train_epoch, reference.linear_probe,
                     preset, "cpu", temperature=0.5, progress=True)
""",
    "SimCLR pretraining": """
encoder = lab.build_encoder("small_cnn")
pairs = lab.pair_loader(data.pretrain, reference.get_augmentations(), 16)
losses = lab.pretrain(encoder, head(encoder.out_dim), pairs, reference.train_epoch, 2, 1e-3, 0.5, "cpu")
""",
    "supervised baseline": """
accuracy = lab.train_supervised(lab.build_encoder("small_cnn"), labelled, data.probe_test, epochs=2, lr=1e-3,
                                batch_size=16, device="cpu", progress=True)
""",
    "features": """
with lab.Progress("features", data.evaluation_batches, True) as bar:
    train_h, train_y = lab.extract_features(lab.build_encoder("small_cnn"), bar.track(data.probe_train))
    test_h, test_y = lab.extract_features(lab.build_encoder("small_cnn"), bar.track(data.probe_test))
""",
}


class RecordingClient(NotebookClient):
    """Keeps every display message (a bar's first drawing and its redrawings) as well as the saved outputs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.shown: dict[int, list[str]] = {}

    def process_message(self, msg, cell, cell_index):
        if msg["msg_type"] in ("display_data", "update_display_data"):
            self.shown.setdefault(cell_index, []).append(msg["content"]["data"].get("text/plain", ""))
        return super().process_message(msg, cell, cell_index)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent(SETUP))]
                                  + [nbformat.v4.new_code_cell(textwrap.dedent(s)) for s in CELLS.values()])
    client = RecordingClient(nb, timeout=300, kernel_name="python3",
                             resources={"metadata": {"path": str(tmp_path_factory.mktemp("progress"))}})
    client.execute()
    return nb, client.shown


BAR = re.compile(r"\d+%\|.*\| *\d+/\d+ \[\d\d:\d\d<\d\d:\d\d")   # percentage, bar, steps, elapsed<left


@pytest.mark.parametrize("index, name", list(enumerate(CELLS, start=1)))
def test_a_long_run_shows_a_bar_with_the_time_left_while_it_runs(executed, index, name):
    _, shown = executed
    bars = [text for text in shown.get(index, []) if BAR.search(text)]
    assert bars and all(text.startswith(name) for text in bars), shown.get(index)


@pytest.mark.parametrize("index, name", list(enumerate(CELLS, start=1)))
def test_the_saved_notebook_keeps_one_plain_line_per_run(executed, index, name):
    nb, _ = executed
    outputs = nb.cells[index].outputs
    assert not [o for o in outputs if o.output_type == "error"], outputs
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"], outputs
    displays = [o for o in outputs if o.output_type == "display_data"]
    assert all(set(o.data) == {"text/plain"} for o in displays), "a widget or other rich output was saved"
    texts = [o.data["text/plain"] for o in displays]
    assert len(texts) == 1 and texts[0].startswith(name) and "\n" not in texts[0], texts
    saved = "".join(o.get("text", "") for o in outputs) + "".join(texts)
    assert not re.search(r"\d+%\|", saved), f"a bar was saved: {saved!r}"


def test_the_exercise_run_line_has_its_results(executed):
    nb, _ = executed
    (line,) = [o.data["text/plain"] for o in nb.cells[1].outputs if o.output_type == "display_data"]
    assert re.fullmatch(r"SimCLR run \(tau 0\.5\): probe \d+\.\d\d%, kNN \d+\.\d\d%; 2 epochs in \d+ s, \d+ s in all",
                        line), line


def test_the_notebooks_long_cells_show_progress(capsys):
    """The lab's probe, kNN and exercise-run cells draw a bar (here tqdm's, outside a kernel) and end on a line."""
    import matplotlib
    matplotlib.use("Agg")
    import numpy as np
    import reference
    import simclr_helpers as lab
    from simclr_helpers import plots
    from simclr_helpers.experiments import LabData, _with_transform, eval_loader
    from test_lab_cells import Recorder, run_cell

    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    train = lab.data.ArrayImageDataset(images, np.arange(40) % 10)
    evaluation = _with_transform(train, lab.get_eval_transform())
    data = LabData(train=train, test=train, pretrain=train, labelled=train, probe_train=eval_loader(evaluation, 16),
                   probe_test=eval_loader(evaluation, 16))
    encoder = lab.build_encoder("small_cnn")
    state = dict(lab=lab, plots=Recorder(plots, show_results=lambda *a, **k: None), data=data, encoder=encoder,
                 random_encoder=encoder, linear_probe=reference.linear_probe, losses=[1.0],
                 preset=lab.PRESETS["cpu"], device="cpu", SHOW_PROGRESS=True)
    run_cell('probe = {"SimCLR encoder": None, "random-init encoder": None}', **state)
    run_cell('with timer("features and kNN")', **state)
    captured = capsys.readouterr()
    assert re.search(r"linear probes: +\d+%\|", captured.err) and re.search(r"features: +\d+%\|", captured.err)
    assert re.search(r"(?m)^linear probes: 12 steps in \d+ s$", captured.out), captured.out
    assert re.search(r"(?m)^features: 12 steps in \d+ s$", captured.out), captured.out

    fake_lab = Recorder(lab, simclr_run=lambda *args, **kwargs: None)
    run_cell("def exercise_run(", lab=fake_lab, preset=lab.PRESETS["cpu"], data=data, device="cpu",
             FAST_AUGMENT=False, SHOW_PROGRESS=True, get_augmentations=reference.get_augmentations,
             ProjectionHead=reference.ProjectionHead, train_epoch=reference.train_epoch,
             linear_probe=reference.linear_probe)
    (_, kwargs), = fake_lab.calls["simclr_run"]
    assert kwargs.get("progress") is True, "the exercise runs show no progress"
