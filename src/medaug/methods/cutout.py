"""``cutout``: erase one random rectangle per image, mixed 1:1 with the originals.

Two named variants:
- ``apga`` (default, the APGA authors' code): area uniform in [area_min, area_max] of the image,
  aspect ratio log-uniform in [0.3, 3.33], filled with 0, clipped at the borders.
- ``devries`` (DeVries & Taylor 2017, the original Cutout): a fixed square of side
  ``size_fraction`` x the image side, centre uniform over the image, clipped at the borders.
Masks are built on the device from random tensors: no host synchronisation.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..config import Prob
from .base import Method, concat_step, register


def rectangle_keep_masks(centres: torch.Tensor, sizes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Keep-masks with one erased box per image.

    centres, sizes float [B, 2] as (y, x) / (h, w) in pixels. Returns float {0, 1} [B, 1, H, W].
    """
    ys = torch.arange(height, device=centres.device, dtype=centres.dtype).view(1, height, 1)
    xs = torch.arange(width, device=centres.device, dtype=centres.dtype).view(1, 1, width)
    cy, cx = centres[:, 0].view(-1, 1, 1), centres[:, 1].view(-1, 1, 1)
    hh, hw = sizes[:, 0].view(-1, 1, 1) / 2, sizes[:, 1].view(-1, 1, 1) / 2
    inside = ((ys + 0.5 - cy).abs() < hh) & ((xs + 0.5 - cx).abs() < hw)
    return (~inside).unsqueeze(1).to(centres.dtype)


@register
class Cutout(Method):
    name = "cutout"

    @dataclasses.dataclass
    class Options:
        variant: str = "apga"  #: 'apga' (random area/aspect, authors' code) or 'devries' (fixed square)
        area_min: Prob = 0.0  #: apga variant: smallest erased fraction of the image
        area_max: Prob = 1.0  #: apga variant: largest erased fraction of the image
        size_fraction: Prob = 0.5  #: devries variant: square side as a fraction of the image side

        def __post_init__(self):
            if self.variant not in ("apga", "devries"):
                raise ValueError(f"variant must be 'apga' or 'devries', not {self.variant!r}")
            if self.area_min > self.area_max:
                raise ValueError(f"area_min {self.area_min} must be <= area_max {self.area_max}")

    def keep_masks(self, x: torch.Tensor) -> torch.Tensor:
        """Random keep-masks float [B, 1, H, W] for a batch x [B, C, H, W] (they broadcast over the channels)."""
        b, _, h, w = x.shape
        dev, o = x.device, self.opts
        u = torch.rand(b, 4, device=dev)
        if o.variant == "apga":
            area = (o.area_min + (o.area_max - o.area_min) * u[:, 0]) * h * w
            log_r = math.log(0.3) + (math.log(1 / 0.3) - math.log(0.3)) * u[:, 1]
            ratio = log_r.exp()
            sizes = torch.stack([(area * ratio).sqrt().clamp(max=h), (area / ratio).sqrt().clamp(max=w)], 1)
            # centre so that the box lies inside the image, as the authors' RandomErasing does
            cy = sizes[:, 0] / 2 + u[:, 2] * (h - sizes[:, 0])
            cx = sizes[:, 1] / 2 + u[:, 3] * (w - sizes[:, 1])
        else:
            side = torch.full((b,), o.size_fraction, device=dev)
            sizes = torch.stack([side * h, side * w], 1)
            cy, cx = u[:, 2] * h, u[:, 3] * w
        return rectangle_keep_masks(torch.stack([cy, cx], 1), sizes, h, w)

    def train_step(self, ctx, x, y):
        return concat_step(ctx, x, y, x * self.keep_masks(x))

    def masks(self, ctx, x):
        return self.keep_masks(x)
