"""simclr_helpers, the code that ships with the notebook: presets, the stub guard, data search, exercise runs."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

import reference
import simclr_helpers as lab
from simclr_helpers import plots


def test_auto_preset_follows_nbgrader_and_the_override(monkeypatch):
    monkeypatch.delenv("SIMCLR_PRESET", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert lab.choose_preset("auto").name == ("cpu" if lab.pick_device().type == "cpu" else "gpu")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert lab.choose_preset("auto").name == "grading"
    assert lab.choose_preset("cpu").name == "cpu", "an explicit preset wins over nbgrader's variable"
    monkeypatch.setenv("SIMCLR_PRESET", "gpu")
    assert lab.choose_preset("auto").name == "gpu"
    with pytest.raises(ValueError, match="unknown preset"):
        lab.choose_preset("fast")


def test_grading_preset_is_the_smallest():
    grading, cpu, gpu = lab.PRESETS["grading"], lab.PRESETS["cpu"], lab.PRESETS["gpu"]
    assert grading.experiment_epochs == 0 and grading.workers == 0
    assert grading.pretrain_fraction * grading.epochs < cpu.pretrain_fraction * cpu.epochs
    assert gpu.encoder == "resnet18" and cpu.encoder == grading.encoder == "small_cnn"


def test_needs_skips_unwritten_stubs_only(capsys):
    with lab.needs("nt_xent"):
        raise NotImplementedError()
    assert "needs nt_xent" in capsys.readouterr().out
    with pytest.raises(ZeroDivisionError):
        with lab.needs("nt_xent"):
            1 / 0


def test_timer_accumulates():
    timer = lab.Timer()
    for _ in range(2):
        with timer("stage"):
            pass
    assert list(timer.seconds) == ["stage"] and timer.seconds["stage"] >= 0 and "stage" in timer.report()


def test_data_folder_is_found_from_a_subfolder(tmp_path, monkeypatch):
    (tmp_path / "data" / "cifar10-jpeg" / "train").mkdir(parents=True)
    (tmp_path / "course" / "simclr").mkdir(parents=True)
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.chdir(tmp_path / "course" / "simclr")
    assert lab.resolve_data_dir() == tmp_path / "data" / "cifar10-jpeg"
    assert lab.offline_copy_available()


def test_nearest_neighbours_rank_by_cosine_similarity():
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    assert lab.nearest_neighbours(torch.tensor([[10.0, 1.0]]), gallery, k=3).tolist() == [[0, 2, 1]]


@pytest.fixture(scope="module")
def lab_data(cifar_dir):
    return lab.load_lab_data(lab.PRESETS["grading"], root=str(cifar_dir))


def test_lab_data_and_one_per_class(lab_data):
    assert len(lab_data.train) == 50_000 and len(lab_data.pretrain) == 1_000
    indices = lab.one_per_class(lab_data.probe_test.dataset, classes=(0, 3, 9), skip=2)
    assert [lab_data.probe_test.dataset[i][1] for i in indices] == [0, 3, 9]


def test_simclr_run_with_the_reference_components(lab_data):
    preset = lab.PRESETS["grading"]
    result = lab.simclr_run(lab_data, reference.get_augmentations(), lambda d: reference.ProjectionHead(d, d, 32),
                            reference.train_epoch, reference.linear_probe, preset, torch.device("cpu"),
                            epochs=1, fraction=0.004, batch_size=64)
    assert len(result["losses"]) == 1 and 0 <= result["probe"] <= 1 and 0 <= result["knn"] <= 1


def test_supervised_baseline_learns(lab_data):
    torch.manual_seed(0)
    encoder = lab.build_encoder("small_cnn")
    before = [p.detach().clone() for p in encoder.parameters()]
    accuracy = lab.train_supervised(encoder, lab.balanced_subset(lab_data.train, 0.01), lab_data.probe_test,
                                    epochs=1, lr=2e-3, batch_size=64, device="cpu", progress=False)
    assert 0.0 <= accuracy <= 1.0
    assert any(not torch.equal(b, p) for b, p in zip(before, encoder.parameters()))


def test_figures_draw(lab_data, capsys):
    plt.close("all")
    plots.show_augmentations(lab_data.train, reference.get_augmentations(normalize=False), [0, 5000], n_views=3)
    plots.show_temperature_effect([0.8, 0.1, -0.2], [0.1, 1.0])
    plots.plot_curves({"run": [3.0, 2.5]})
    plots.plot_embeddings({"a": (torch.randn(20, 2).numpy(), torch.arange(20) % 10)})
    plots.show_retrieval(lab_data.test, lab_data.train, [0, 1], torch.tensor([[0, 1, 2], [3, 4, 5]]))
    plots.show_results({"run": 0.5, "other run": 0.4, "skipped run": None}, title="results")
    assert [len(plt.figure(n).axes) for n in plt.get_fignums()] == [8, 2, 1, 1, 8, 1]
    assert "skipped run  skipped" in capsys.readouterr().out
    plt.close("all")
