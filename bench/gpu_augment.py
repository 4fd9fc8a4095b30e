"""SimCLR's augmentation distribution (``reference.get_augmentations``) executed on a whole batch of tensors.

Each image gets its own random parameters, as with torchvision's per-image pipeline: RandomResizedCrop(32)
(scale 0.08-1, ratio 3/4-4/3, torchvision's sampling with ten tries and its fallback), horizontal flip
(p=0.5), ColorJitter(0.4, 0.4, 0.4, 0.1) in a random order per image applied with p=0.8, grayscale (p=0.2),
then CIFAR-10 normalisation. It runs on whatever device the batch is on (a GPU in the fast path; the CPU in
the tests). Differences from the PIL pipeline: bilinear resampling by ``grid_sample``, and colour operations
in float rather than on 8-bit images.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from simclr_helpers import CIFAR10_MEAN, CIFAR10_STD

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
P_JITTER, P_GRAY, P_FLIP = 0.8, 0.2, 0.5
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # torchvision's rgb_to_grayscale


def crop_params(n: int, height: int, width: int, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, 4) integer crops (top, left, h, w) drawn as ``RandomResizedCrop.get_params`` draws them."""
    area = height * width
    tries = 10
    target = area * torch.empty(n, tries, device=device).uniform_(*SCALE, generator=generator)
    log_ratio = torch.empty(n, tries, device=device).uniform_(math.log(RATIO[0]), math.log(RATIO[1]),
                                                               generator=generator)
    aspect = log_ratio.exp()
    w = (target * aspect).sqrt().round()
    h = (target / aspect).sqrt().round()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(ok.any(1), ok.int().argmax(1), torch.zeros(n, dtype=torch.long, device=device))
    rows = torch.arange(n, device=device)
    w, h = w[rows, first], h[rows, first]
    # torchvision's fallback (no try fitted): the whole image when its ratio is within RATIO, as for 32x32.
    w = torch.where(ok.any(1), w, torch.full_like(w, width))
    h = torch.where(ok.any(1), h, torch.full_like(h, height))
    top = (torch.rand(n, device=device, generator=generator) * (height - h + 1)).floor()
    left = (torch.rand(n, device=device, generator=generator) * (width - w + 1)).floor()
    return torch.stack([top, left, h, w], dim=1).long()


def resized_crop(images: torch.Tensor, crops: torch.Tensor, flip: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Crop every image to its (top, left, h, w), mirror where ``flip``, resize to ``size`` (bilinear)."""
    n, _, height, width = images.shape
    top, left, h, w = crops.to(images.dtype).unbind(1)
    sign = 1 - 2 * flip.to(images.dtype)
    theta = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = sign * w / width
    theta[:, 0, 2] = 2 * left / width - 1 + w / width
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = 2 * top / height - 1 + h / height
    grid = F.affine_grid(theta, [n, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """(n, 1, H, W) luma with torchvision's weights."""
    weights = torch.tensor(GRAY_WEIGHTS, dtype=images.dtype, device=images.device)
    return (images * weights[:, None, None]).sum(1, keepdim=True)


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(1)
    maxc, minc = images.max(1).values, images.min(1).values
    equal = maxc == minc
    chroma = maxc - minc
    ones = torch.ones_like(maxc)
    s = chroma / torch.where(equal, ones, maxc)
    divisor = torch.where(equal, ones, chroma)
    rc, gc, bc = (maxc - r) / divisor, (maxc - g) / divisor, (maxc - b) / divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack([h, s, maxc], dim=1)


def hsv_to_rgb(images: torch.Tensor) -> torch.Tensor:
    h, s, v = images.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    p = (v * (1 - s)).clamp(0, 1)
    q = (v * (1 - s * f)).clamp(0, 1)
    t = (v * (1 - s * (1 - f))).clamp(0, 1)
    sector = F.one_hot(i, 6).permute(0, 3, 1, 2).to(images.dtype)           # (n, 6, H, W)
    table = torch.stack([torch.stack(c, dim=1) for c in ((v, q, p, p, t, v), (t, v, v, q, p, p),
                                                         (p, p, t, v, v, q))], dim=1)  # (n, 3, 6, H, W)
    return (table * sector[:, None]).sum(2)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor[:, None, None, None] * images + (1 - factor[:, None, None, None]) * other).clamp(0, 1)


def _brightness(x, f):
    return (x * f[:, None, None, None]).clamp(0, 1)


def _contrast(x, f):
    return _blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True), f)


def _saturation(x, f):
    return _blend(x, grayscale(x), f)


def _hue(x, f):
    hsv = rgb_to_hsv(x)
    hsv[:, 0] = torch.remainder(hsv[:, 0] + f[:, None, None], 1.0)
    return hsv_to_rgb(hsv)


def color_jitter(images: torch.Tensor, apply: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """ColorJitter(0.4, 0.4, 0.4, 0.1) on the images where ``apply``, each with its own factors and order."""
    n, device = len(images), images.device
    uniform = lambda low, high: torch.empty(n, device=device).uniform_(low, high, generator=generator)
    factors = [uniform(1 - JITTER["brightness"], 1 + JITTER["brightness"]),
               uniform(1 - JITTER["contrast"], 1 + JITTER["contrast"]),
               uniform(1 - JITTER["saturation"], 1 + JITTER["saturation"]),
               uniform(-JITTER["hue"], JITTER["hue"])]
    operations = (_brightness, _contrast, _saturation, _hue)
    order = torch.rand(n, 4, device=device, generator=generator).argsort(1)  # a random permutation per image
    out = images
    for position in range(4):
        for op_index, operation in enumerate(operations):
            chosen = apply & (order[:, position] == op_index)
            if chosen.any():
                out = torch.where(chosen[:, None, None, None], operation(out, factors[op_index]), out)
    return out


def augment_batch(images: torch.Tensor, normalize: bool = True, generator: torch.Generator | None = None,
                  size: int = 32) -> torch.Tensor:
    """One SimCLR view of every image in a batch: uint8 (n, 3, H, W) or float in [0, 1] -> float (n, 3, size, size)."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    n, device = len(x), x.device
    rand = lambda: torch.rand(n, device=device, generator=generator)
    x = resized_crop(x, crop_params(n, x.shape[2], x.shape[3], generator, device), rand() < P_FLIP, size)
    x = color_jitter(x.clamp(0, 1), rand() < P_JITTER, generator)
    x = torch.where((rand() < P_GRAY)[:, None, None, None], grayscale(x).expand_as(x), x)
    if normalize:
        mean = torch.tensor(CIFAR10_MEAN, device=device)[:, None, None]
        std = torch.tensor(CIFAR10_STD, device=device)[:, None, None]
        x = (x - mean) / std
    return x
