"""``classical``: flips, small affine, brightness/contrast/gamma and noise, batched on the device by kornia;
on colour images also a saturation and hue jitter (kornia's ``ColorJitter``; none on gray images).

Augmented copies are mixed 1:1 with the originals (one update on both halves).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import kornia.augmentation as K
import torch

from ..config import NonNegFloat, Prob, Range
from .base import Method, concat_step, register


@register
class Classical(Method):
    name = "classical"
    is_baseline = True  # apga with classical = true starts from a classical run's branch.pt

    @dataclasses.dataclass
    class Options:
        hflip: Prob = 0.5  #: probability of a horizontal flip
        degrees: Annotated[float, Range(ge=0, le=180)] = 10.0  #: max rotation
        translate: Prob = 0.05  #: max shift, fraction of the side
        scale: Annotated[float, Range(ge=0, lt=1)] = 0.1  #: zoom in [1 - scale, 1 + scale]
        brightness: Prob = 0.1  #: brightness factor in [1 - brightness, 1 + brightness]
        contrast: Prob = 0.2  #: contrast factor in [1 - contrast, 1 + contrast]
        gamma: Annotated[float, Range(ge=0, lt=1)] = 0.2  #: gamma in [1 - gamma, 1 + gamma]
        noise_std: NonNegFloat = 0.02  #: std of the added Gaussian noise (images in [0, 1])
        p: Prob = 0.8  #: probability of each intensity transform
        saturation: Prob = 0.2  #: colour images: saturation factor in [1 - saturation, 1 + saturation]
        hue: Annotated[float, Range(ge=0, le=0.5)] = 0.02  #: colour images: hue shift in [-hue, hue] turns of the colour circle (0.5 = half)

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


def mix_in(x: torch.Tensor, augment, p: float, gen: torch.Generator) -> torch.Tensor:
    """x [B, C, H, W] with each image replaced by ``augment``'s copy with probability ``p`` (draws from ``gen``)."""
    if p <= 0:
        return x
    keep = (torch.rand(len(x), generator=gen) >= p).to(x.device)
    return torch.where(keep[:, None, None, None], x, augment(x))


class Stacked:
    """Classical augmentation under another method (its options ``classical = true``, ``classical_p``): each image
    of a batch is replaced by its ``classical`` augmentation (the defaults) with probability ``p``, 0.5 being in
    expectation a ``classical`` run's 1:1 mix of originals and copies. Draws come from a generator seeded with the
    run's seed and saved with the method's state, so a resumed run draws what it would have."""

    def __init__(self, ctx, p: float):
        self.classical, self.p = Classical(), p
        self.classical.setup(ctx)
        self.gen = torch.Generator().manual_seed(ctx.cfg.seed * 7919 + 29)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return mix_in(x, self.classical.apply, self.p, self.gen)

    def state_dict(self) -> dict:
        return {"stacked_rng": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "stacked_rng" in state:
            self.gen.set_state(state["stacked_rng"])


def stacked_on(options: dict | None) -> str:
    """``Method.builds_on`` of a method with the option ``classical``: ``classical`` when it is true, else ``none``."""
    return "classical" if (options or {}).get("classical") else "none"
