"""The batched augmentation of the fast path draws from the same distribution as the torchvision pipeline."""
import numpy as np
import pytest
import torch
from torchvision import transforms

import reference
import simclr_helpers as lab
from simclr_helpers import batch_augment
from simclr_helpers.batch_augment import BatchAugment, crop_params, hsv_to_rgb, resized_crop, rgb_to_hsv

SIMCLR = BatchAugment.from_pipeline(reference.get_augmentations())
SIMCLR_RAW = BatchAugment.from_pipeline(reference.get_augmentations(normalize=False))


def test_reads_the_pipeline_parameters():
    assert SIMCLR.size == 32 and SIMCLR.scale == (0.08, 1.0) and SIMCLR.p_flip == 0.5 and SIMCLR.p_gray == 0.2
    assert SIMCLR.p_jitter == 0.8 and dict(SIMCLR.jitter) == dict(
        brightness=(0.6, 1.4), contrast=(0.6, 1.4), saturation=(0.6, 1.4), hue=(-0.1, 0.1))
    assert SIMCLR.mean == lab.CIFAR10_MEAN and SIMCLR_RAW.mean is None
    plain = BatchAugment.from_pipeline(transforms.Compose([transforms.RandomHorizontalFlip(1.0), transforms.ToTensor()]))
    images = torch.rand(2, 3, 32, 32)
    assert torch.equal(plain(images), images.flip(3)), "without a crop only the flip applies"
    with pytest.raises(ValueError, match="cannot run .*GaussianBlur"):
        BatchAugment.from_pipeline(transforms.Compose([transforms.GaussianBlur(3), transforms.ToTensor()]))

# Rates are estimated from thousands of draws with fixed seeds; each tolerance is 4 or more standard errors,
# so a correct implementation drawn with another seed fails it with probability below 1e-4.


def test_crop_parameters_follow_torchvision():
    n = 20_000
    ours = crop_params(n, 32, 32, torch.Generator().manual_seed(0)).double()
    torch.manual_seed(0)
    image = torch.zeros(3, 32, 32)
    theirs = torch.tensor([transforms.RandomResizedCrop.get_params(image, (0.08, 1.0), (3 / 4, 4 / 3))
                           for _ in range(n)]).double()
    for name, column in (("area", lambda c: c[:, 2] * c[:, 3] / 1024), ("aspect", lambda c: c[:, 3] / c[:, 2]),
                         ("top", lambda c: c[:, 0]), ("left", lambda c: c[:, 1])):
        a, b = column(ours), column(theirs)
        se = (a.var() / n + b.var() / n).sqrt()
        assert abs(a.mean() - b.mean()) < 5 * se, f"{name}: mean {a.mean():.4f} against torchvision's {b.mean():.4f}"
        for q in (0.1, 0.5, 0.9):
            assert abs(a.quantile(q) - b.quantile(q)) <= 0.03 * max(1.0, b.quantile(q).item()), (name, q)
    assert (ours[:, 2:] >= 1).all() and (ours[:, :2] + ours[:, 2:] <= 32).all(), "a crop leaves the image"


def test_full_crop_is_identity_and_flip_mirrors():
    images = torch.rand(4, 3, 32, 32)
    full = torch.tensor([[0, 0, 32, 32]] * 4)
    assert torch.allclose(resized_crop(images, full, torch.zeros(4, dtype=torch.bool)), images, atol=1e-5)
    assert torch.allclose(resized_crop(images, full, torch.ones(4, dtype=torch.bool)), images.flip(3), atol=1e-5)
    corner = resized_crop(images, torch.tensor([[0, 0, 16, 16]] * 4), torch.zeros(4, dtype=torch.bool), size=16)
    assert torch.allclose(corner, images[:, :, :16, :16], atol=1e-5), "a crop must take the pixels it names"


def test_hsv_round_trip_and_hue_keeps_gray():
    x = torch.rand(16, 3, 8, 8)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    gray = torch.rand(4, 1, 8, 8).expand(4, 3, 8, 8)
    assert torch.allclose(batch_augment._hue(gray, torch.full((4,), 0.1)), gray, atol=1e-6)


def test_views_shape_and_independence():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    a, b = SIMCLR(images, gen), SIMCLR(images, gen)
    assert a.shape == (64, 3, 32, 32) and a.dtype == torch.float32
    assert all(not torch.equal(x, y) for x, y in zip(a, b)), "two views of an image must differ"
    raw = SIMCLR_RAW(images, gen)
    assert raw.min() >= 0 and raw.max() <= 1


def test_gray_and_jitter_rates():
    """Uniform colour images: crops leave them alone, grayscale equalises channels, jitter changes the colour."""
    n = 4000
    images = torch.tensor([200, 60, 30], dtype=torch.uint8)[None, :, None, None].expand(n, 3, 32, 32)
    views = SIMCLR_RAW(images, torch.Generator().manual_seed(1))
    gray = (views[:, 0] == views[:, 1]).all(dim=(1, 2)) & (views[:, 1] == views[:, 2]).all(dim=(1, 2))
    original = images[:1].float() / 255
    jittered = ~gray & ((views - original).abs().amax(dim=(1, 2, 3)) > 1e-4)
    assert abs(gray.float().mean().item() - 0.2) < 0.03                       # se 0.0063
    assert abs(jittered.sum().item() / (~gray).sum().item() - 0.8) < 0.03     # se 0.0071


def test_flip_rate():
    """Half-white images: the pipeline's flip puts the white half on the left in about half of the views."""
    n = 4000
    images = torch.zeros(n, 3, 32, 32)
    images[:, :, :, 16:] = 1.0
    flip_only = BatchAugment(p_flip=SIMCLR.p_flip)
    out = flip_only(images, torch.Generator().manual_seed(2))
    assert abs((out[:, 0, 0, 0] > 0.5).float().mean().item() - 0.5) < 0.04   # se 0.0079
    assert torch.equal(BatchAugment(p_flip=0.0)(images), images)


@pytest.fixture(scope="module")
def cifar_batch(cifar_dir):
    data = reference.load_cifar10(train=True, root=cifar_dir)
    indices = np.random.default_rng(0).choice(len(data), 2000, replace=False)
    return [data[int(i)][0] for i in indices]


def _channel_stats(views: torch.Tensor) -> torch.Tensor:
    """Per channel: mean and std; then the share of views whose three channels are equal everywhere."""
    gray = ((views[:, 0] == views[:, 1]) & (views[:, 1] == views[:, 2])).all(dim=(1, 2))
    return torch.cat([views.mean(dim=(0, 2, 3)), views.std(dim=(0, 2, 3)), gray.float().mean()[None]])


def test_view_statistics_match_the_torchvision_pipeline(cifar_batch):
    """On 2,000 real CIFAR-10 images, the views' channel means and spreads agree with torchvision's."""
    torch.manual_seed(3)
    pipeline = reference.get_augmentations(normalize=False)
    theirs = torch.stack([pipeline(image) for image in cifar_batch])
    batch = torch.stack([transforms.functional.pil_to_tensor(image) for image in cifar_batch])
    ours = SIMCLR_RAW(batch, torch.Generator().manual_seed(3))
    a, b = _channel_stats(ours), _channel_stats(theirs)
    print("ours", [round(v, 4) for v in a.tolist()], "torchvision", [round(v, 4) for v in b.tolist()])
    assert torch.allclose(a[:6], b[:6], atol=0.015), "channel means/stds differ from the torchvision pipeline"
    assert abs(a[6] - b[6]) < 0.05, "the share of gray views differs from the torchvision pipeline"  # se 0.0127


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: the fast path's device run")
def test_runs_on_the_gpu_like_on_the_cpu():
    images = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8)
    out = SIMCLR(images.cuda(), torch.Generator("cuda").manual_seed(0))
    assert out.is_cuda and out.shape == (256, 3, 32, 32) and torch.isfinite(out).all()


def test_device_pair_loader_batches_like_pair_loader(cifar_dir):
    subset = lab.balanced_subset(reference.load_cifar10(train=True, root=cifar_dir), 0.01)
    loader = lab.DevicePairLoader(subset, reference.get_augmentations(), batch_size=64, device="cpu", seed=0)
    batches = list(loader)
    assert len(batches) == len(loader) == 500 // 64
    (x_i, x_j), labels = batches[0]
    assert x_i.shape == x_j.shape == (64, 3, 32, 32) and labels.shape == (64,) and not torch.equal(x_i, x_j)
    first, second = torch.cat([y for _, y in batches]), torch.cat([y for _, y in loader])
    assert not torch.equal(first, second), "each epoch reshuffles"


def test_device_pair_loader_keeps_images_with_their_labels(cifar_dir):
    subset = lab.balanced_subset(reference.load_cifar10(train=True, root=cifar_dir), 0.002)
    identity = lab.DevicePairLoader(subset, transforms.Compose([transforms.ToTensor()]), batch_size=20, device="cpu")
    originals = {transforms.functional.to_tensor(image).flatten()[:64].numpy().tobytes(): label
                 for image, label in (subset[i] for i in range(len(subset)))}
    for (x_i, x_j), labels in identity:
        assert torch.equal(x_i, x_j)
        for image, label in zip(x_i, labels):
            assert originals[image.flatten()[:64].numpy().tobytes()] == label
