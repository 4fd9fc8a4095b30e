"""CIFAR-10 loading from the offline copy, clear errors for bad folders, subsets and two-view pairs."""
import numpy as np
import pytest
import torch
from PIL import Image

from reference import CIFAR10NotFoundError, TwoViewDataset, balanced_subset, get_augmentations, load_cifar10
from simclr_helpers import CIFAR10_CLASSES, dataset_targets


@pytest.fixture(scope="module")
def train_set(cifar_dir):
    return load_cifar10(train=True, root=cifar_dir)


def test_real_cifar10_splits(cifar_dir, train_set):
    test_set = load_cifar10(train=False, root=cifar_dir)
    assert len(train_set) == 50_000 and len(test_set) == 10_000
    assert np.bincount(dataset_targets(train_set)).tolist() == [5000] * 10
    image, label = train_set[0]
    assert isinstance(image, Image.Image) and image.size == (32, 32) and image.mode == "RGB" and label == 0


def test_environment_variable_selects_the_copy(cifar_dir, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(cifar_dir))
    assert len(load_cifar10(train=False)) == 10_000


def test_offline_path_never_downloads(cifar_dir, monkeypatch):
    import torchvision.datasets

    def no_download(*args, **kwargs):
        raise AssertionError("torchvision's CIFAR10 (download) was called")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_download)
    assert len(load_cifar10(train=False, root=cifar_dir)) == 10_000


def test_missing_folder_names_path_and_remedy(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(CIFAR10NotFoundError) as err:
        load_cifar10(root=missing)
    message = str(err.value)
    assert str(missing / "train") in message and "tar -xzf" in message and "download=True" in message


def test_malformed_folder_is_explained(tmp_path):
    (tmp_path / "train" / "cats").mkdir(parents=True)
    with pytest.raises(CIFAR10NotFoundError, match="not a CIFAR-10 ImageFolder"):
        load_cifar10(root=tmp_path)


def test_unreadable_image_is_explained(tmp_path):
    for name in CIFAR10_CLASSES:
        (tmp_path / "test" / name).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(tmp_path / "test" / name / "0000.jpg")
    (tmp_path / "test" / "cat" / "0001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CIFAR10NotFoundError, match="cannot read image .*0001.jpg"):
        load_cifar10(train=False, root=tmp_path)


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5])
def test_balanced_subset(train_set, fraction):
    subset = balanced_subset(train_set, fraction, seed=3)
    counts = np.bincount(dataset_targets(subset), minlength=10)
    assert counts.tolist() == [round(5000 * fraction)] * 10
    assert subset.indices == balanced_subset(train_set, fraction, seed=3).indices
    assert subset.indices != balanced_subset(train_set, fraction, seed=4).indices


def test_balanced_subset_rejects_bad_fraction(train_set):
    with pytest.raises(ValueError):
        balanced_subset(train_set, 0.0)


def test_two_view_dataset(train_set):
    pairs = TwoViewDataset(balanced_subset(train_set, 0.01), get_augmentations())
    torch.manual_seed(0)
    (x_i, x_j), label = pairs[0]
    assert x_i.shape == x_j.shape == (3, 32, 32) and not torch.equal(x_i, x_j)
    assert label == dataset_targets(pairs.base)[0] and len(pairs) == 500


def test_offline_server_without_the_copy_gets_one_clear_message(tmp_path, monkeypatch):
    """No network, no CIFAR10_DIR, no copy: torchvision's real download path fails with a URLError; the
    student sees one message (the folder looked for, the variable, the hub's line), with no URLError chained."""
    import urllib.error
    import urllib.request

    from simclr_helpers import CIFAR10DownloadError, PRESETS, experiments

    def no_network(*args, **kwargs):
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(experiments, "offline_copy_available", lambda root=None: False)   # the repo's copy
    monkeypatch.setattr("simclr_helpers.data.resolve_data_dir", lambda root=None: tmp_path / "data" / "cifar10-jpeg")
    with pytest.raises(CIFAR10DownloadError) as err:
        experiments.load_lab_data(PRESETS["grading"])
    message = str(err.value)
    assert "Network is unreachable" in message and str(tmp_path / "data" / "cifar10-jpeg" / "train") in message
    assert "CIFAR10_DIR is not set" in message and 'c.Spawner.environment = {"CIFAR10_DIR": ' in message
    assert err.value.__cause__ is None and err.value.__suppress_context__, "the URLError must not be chained"
    assert isinstance(err.value, CIFAR10NotFoundError)
