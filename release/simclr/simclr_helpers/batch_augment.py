"""A torchvision augmentation pipeline executed on a whole batch of image tensors, on any device.

``BatchAugment.from_pipeline(get_augmentations())`` reads the parameters of a pipeline made of
RandomResizedCrop, RandomHorizontalFlip, ColorJitter (bare or in RandomApply), RandomGrayscale, ToTensor and
Normalize, and draws the same distribution with per-image random parameters as tensor operations, so the
augmentation runs on the GPU instead of in CPU workers. The steps are applied in that (SimCLR's) order.
Differences from the PIL pipeline: bilinear resampling by ``grid_sample``, and colour operations in float
rather than on 8-bit images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision import transforms

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # torchvision's rgb_to_grayscale


def crop_params(n: int, height: int, width: int, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", scale: tuple[float, float] = (0.08, 1.0),
                ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """(n, 4) integer crops (top, left, h, w) drawn as ``RandomResizedCrop.get_params`` draws them."""
    area = height * width
    tries = 10
    target = area * torch.empty(n, tries, device=device).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(n, tries, device=device).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                                               generator=generator)
    aspect = log_ratio.exp()
    w = (target * aspect).sqrt().round()
    h = (target / aspect).sqrt().round()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(ok.any(1), ok.int().argmax(1), torch.zeros(n, dtype=torch.long, device=device))
    rows = torch.arange(n, device=device)
    w, h = w[rows, first], h[rows, first]
    # torchvision's fallback (no try fitted): the whole image when its ratio is within ``ratio``, as for 32x32.
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


def color_jitter(images: torch.Tensor, apply: torch.Tensor, ranges: dict[str, tuple[float, float] | None],
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """ColorJitter on the images where ``apply``, each with its own factors and its own order of the four
    operations; ``ranges`` maps brightness/contrast/saturation/hue to (low, high) or None (left out)."""
    n, device = len(images), images.device
    operations = {"brightness": _brightness, "contrast": _contrast, "saturation": _saturation, "hue": _hue}
    factors = {name: torch.empty(n, device=device).uniform_(*ranges[name], generator=generator)
               for name in operations if ranges.get(name) is not None}
    order = torch.rand(n, 4, device=device, generator=generator).argsort(1)  # a random permutation per image
    out = images
    for position in range(4):
        for op_index, (name, operation) in enumerate(operations.items()):
            chosen = apply & (order[:, position] == op_index)
            if name in factors and chosen.any():
                out = torch.where(chosen[:, None, None, None], operation(out, factors[name]), out)
    return out


@dataclass(frozen=True)
class BatchAugment:
    """The parameters of an augmentation pipeline; calling it augments a batch, one draw per image."""
    size: int | None = None                       # RandomResizedCrop's output size (None: no crop)
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    p_flip: float = 0.0
    jitter: tuple[tuple[str, tuple[float, float] | None], ...] = ()
    p_jitter: float = 0.0
    p_gray: float = 0.0
    mean: tuple[float, ...] | None = None         # Normalize (None: values stay in [0, 1])
    std: tuple[float, ...] | None = None

    @classmethod
    def from_pipeline(cls, pipeline: transforms.Compose) -> "BatchAugment":
        """Read a torchvision pipeline; steps it cannot run batched raise ``ValueError`` naming them."""
        found: dict = {}
        for step in pipeline.transforms:
            inner, p = (step.transforms, step.p) if isinstance(step, transforms.RandomApply) else ([step], 1.0)
            if len(inner) == 1 and isinstance(inner[0], transforms.ColorJitter):
                jitter = inner[0]
                found.update(p_jitter=p, jitter=tuple((name, getattr(jitter, name)) for name in
                                                      ("brightness", "contrast", "saturation", "hue")))
            elif isinstance(step, transforms.RandomResizedCrop):
                found.update(size=step.size[0], scale=tuple(step.scale), ratio=tuple(step.ratio))
            elif isinstance(step, transforms.RandomHorizontalFlip):
                found.update(p_flip=step.p)
            elif isinstance(step, transforms.RandomGrayscale):
                found.update(p_gray=step.p)
            elif isinstance(step, transforms.Normalize):
                found.update(mean=tuple(step.mean), std=tuple(step.std))
            elif not isinstance(step, (transforms.ToTensor, transforms.PILToTensor)):
                raise ValueError(f"the batched augmentation cannot run {step!r}: use the torchvision data loader")
        return cls(**found)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One view of every image: uint8 (n, 3, H, W) or float in [0, 1] -> float (n, 3, size, size)."""
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        n, device = len(x), x.device
        rand = lambda: torch.rand(n, device=device, generator=generator)
        flip = rand() < self.p_flip
        if self.size is not None:
            crops = crop_params(n, x.shape[2], x.shape[3], generator, device, self.scale, self.ratio)
            x = resized_crop(x, crops, flip, self.size)
        else:
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if self.jitter:
            x = color_jitter(x.clamp(0, 1), rand() < self.p_jitter, dict(self.jitter), generator)
        x = torch.where((rand() < self.p_gray)[:, None, None, None], grayscale(x).expand_as(x), x)
        if self.mean is not None:
            mean = torch.tensor(self.mean, device=device)[:, None, None]
            x = (x - mean) / torch.tensor(self.std, device=device)[:, None, None]
        return x
