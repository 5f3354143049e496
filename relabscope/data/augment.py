"""Batched augmentation on the training device.

Loaders hand over uint8 images; everything per-pixel happens here, on whole batches, on the
GPU when there is one, so CPU workers only decode. The training recipe is the SCN
reference's: with probability 0.5 either a horizontal flip or Gaussian noise (variance 30
on the 0-255 scale), ImageNet normalisation, then RandomErasing (p 0.5, area 2-25%,
aspect 0.3-3.3, erased to 0). Randomness comes from a generator the trainer seeds per
epoch, so an interrupted and resumed run augments exactly as an uninterrupted one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NOISE_STD = math.sqrt(30.0)  # SCN's add_g: variance 30 on 0..255 pixels


def to_model_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``B x C x H x W`` (C = 1 or 3) -> float ``B x 3 x size x size`` in 0..255."""
    x = images.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (size, size):
        shrink = x.shape[-1] > size
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return x


def normalize(x: torch.Tensor) -> torch.Tensor:
    """0..255 -> ImageNet-normalised, channels-last (the layout convolutions run fastest in)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1) * 255.0
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def flip_or_noise(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """With probability ``p`` per image: a horizontal flip or Gaussian noise, equally likely."""
    b = x.shape[0]
    apply = torch.rand(b, device=x.device, generator=gen) < p
    pick_flip = torch.rand(b, device=x.device, generator=gen) < 0.5
    flip = (apply & pick_flip).view(b, 1, 1, 1)
    noise = (apply & ~pick_flip).view(b, 1, 1, 1)
    x = torch.where(flip, x.flip(-1), x)
    jitter = torch.randn(x.shape, device=x.device, generator=gen) * NOISE_STD
    return torch.where(noise, (x + jitter).clamp(0.0, 255.0), x)


def random_erasing(
    x: torch.Tensor,
    gen: torch.Generator,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.25),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> torch.Tensor:
    """torchvision's RandomErasing, batched: one rectangle per chosen image, set to 0.

    A rectangle that would not fit is dropped rather than re-drawn (torchvision retries up
    to ten times), which only matters for the most elongated draws."""
    b, _, h, w = x.shape
    dev = x.device
    apply = torch.rand(b, device=dev, generator=gen) < p
    area = torch.empty(b, device=dev).uniform_(*scale, generator=gen) * (h * w)
    log_r = torch.empty(b, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    aspect = log_r.exp()
    eh = (area * aspect).sqrt().round()
    ew = (area / aspect).sqrt().round()
    fits = (eh < h) & (ew < w) & (eh > 0) & (ew > 0) & apply
    top = (torch.rand(b, device=dev, generator=gen) * (h - eh + 1)).floor()
    left = (torch.rand(b, device=dev, generator=gen) * (w - ew + 1)).floor()
    rows = torch.arange(h, device=dev).view(1, h)
    cols = torch.arange(w, device=dev).view(1, w)
    in_rows = (rows >= top.view(b, 1)) & (rows < (top + eh).view(b, 1))
    in_cols = (cols >= left.view(b, 1)) & (cols < (left + ew).view(b, 1))
    mask = (in_rows.unsqueeze(2) & in_cols.unsqueeze(1) & fits.view(b, 1, 1)).unsqueeze(1)
    return x.masked_fill(mask, 0.0)


def train_transform(images: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """The training-time pipeline: resize, flip-or-noise, normalise, random erasing."""
    x = flip_or_noise(to_model_input(images, size), gen)
    return random_erasing(normalize(x), gen)


def eval_transform(images: torch.Tensor, size: int) -> torch.Tensor:
    """The evaluation pipeline: resize and normalise only."""
    return normalize(to_model_input(images, size))
