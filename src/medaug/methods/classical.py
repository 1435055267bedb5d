"""``classical``: flips, small affine, brightness/contrast/gamma and noise, batched on the device by kornia;
on colour images also a saturation and hue jitter (kornia's ``ColorJitter``; none on gray images).

Augmented copies are mixed 1:1 with the originals (one update on both halves).
"""

from __future__ import annotations

import dataclasses

import kornia.augmentation as K
import torch

from .base import Method, concat_step, register


@register
class Classical(Method):
    name = "classical"

    @dataclasses.dataclass
    class Options:
        hflip: float = 0.5  #: probability of a horizontal flip
        degrees: float = 10.0  #: max rotation
        translate: float = 0.05  #: max shift, fraction of the side
        scale: float = 0.1  #: zoom in [1 - scale, 1 + scale]
        brightness: float = 0.1
        contrast: float = 0.2
        gamma: float = 0.2  #: gamma in [1 - gamma, 1 + gamma]
        noise_std: float = 0.02
        p: float = 0.8  #: probability of each intensity transform
        saturation: float = 0.2  #: colour images: saturation factor in [1 - saturation, 1 + saturation]
        hue: float = 0.02  #: colour images: hue shift in [-hue, hue] turns of the colour circle (0.5 = half)

        def __post_init__(self):
            if not 0 <= self.saturation <= 1 or not 0 <= self.hue <= 0.5:
                raise ValueError(f"saturation must be in [0, 1] and hue in [0, 0.5], not {self.saturation} and {self.hue}")

    def setup(self, ctx) -> None:
        o = self.opts
        colour = [K.ColorJitter(saturation=o.saturation, hue=o.hue, p=o.p)] if ctx.channels == 3 else []
        self.augment = K.AugmentationSequential(
            K.RandomHorizontalFlip(p=o.hflip),
            K.RandomAffine(degrees=o.degrees, translate=(o.translate, o.translate), scale=(1 - o.scale, 1 + o.scale), p=1.0),
            K.RandomBrightness(brightness=(1 - o.brightness, 1 + o.brightness), p=o.p),
            K.RandomContrast(contrast=(1 - o.contrast, 1 + o.contrast), p=o.p),
            K.RandomGamma(gamma=(1 - o.gamma, 1 + o.gamma), p=o.p),
            *colour,
            K.RandomGaussianNoise(std=o.noise_std, p=o.p),
        ).to(ctx.device)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Augment float [B, C, H, W] in [0, 1]; returns the same shape, clamped to [0, 1]."""
        return self.augment(x).clamp_(0, 1)

    def train_step(self, ctx, x, y):
        return concat_step(ctx, x, y, self.apply(x))
