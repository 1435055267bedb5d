"""``randaugment`` and ``trivialaugment``: kornia's automatic augmentation policies, mixed 1:1 with the originals.

RandAugment (Cubuk et al. 2020) applies ``n`` operations drawn without replacement, all at one
magnitude ``m`` of 30; TrivialAugment (Mueller & Hutter 2021) applies one operation at a magnitude
drawn uniformly per image. Both are ``kornia.augmentation.auto`` on the device, on gray images
float [B, 1, H, W] in [0, 1]:

- every operation of kornia's default policies runs on one channel except RandAugment's ``color``
  (a saturation change: kornia raises on 1 channel, and on a gray image it is the identity), so the
  gray RandAugment policy is kornia's without ``color`` (14 operations); TrivialAugment's (12) has
  none to drop. ``ops`` restricts either to a comma list of kornia's operation names.
- kornia draws the operations once per call, i.e. the same operations for the whole batch (the
  magnitudes, and the sign of symmetric ones, per image); the papers draw per image. ``groups`` = G
  splits the batch into G chunks with their own draws (G = batch size: per image, one kornia call each).
- kornia maps RandAugment's magnitude linearly onto each range, one direction only: with ``m = 9``
  brightness, contrast and sharpness get the factor 0.1 + 1.8 * 9 / 30 = 0.64 (brightness adds
  0.64 - 1 = -0.36, contrast scales by 0.64: always darker and flatter, where torchvision draws
  1 +- 0.27 with a random sign), and ``m = 15`` makes the three the identity.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import torch
from kornia.augmentation.auto import RandAugment as KRandAugment
from kornia.augmentation.auto import TrivialAugment as KTrivialAugment
from kornia.augmentation.auto.rand_augment.rand_augment import default_policy as RA_POLICY
from kornia.augmentation.auto.trivial_augment.trivial_augment import default_policy as TA_POLICY

from ..config import PosInt, Range
from .base import Method, concat_step, register

COLOUR_OPS = {"color"}  # need 3 channels in kornia; the identity on a gray image


def gray_policy(default: list, ops: str, method: str) -> list:
    """kornia sub-policies [[(name, low, high)]] usable on 1 channel, restricted to ``ops`` (comma list) if given."""
    usable = {p[0][0]: p for p in default if p[0][0] not in COLOUR_OPS}
    if not ops.strip():
        return list(usable.values())
    names = [n.strip() for n in ops.split(",") if n.strip()]
    unknown = [n for n in names if n not in usable]
    if unknown:
        raise ValueError(f"ops {', '.join(unknown)} not in {method}'s gray policy; choose from {', '.join(usable)}")
    return [usable[n] for n in dict.fromkeys(names)]


class _PolicyMethod(Method):
    """Shared step: augment with ``self.augment`` (per group of the batch), then the 1:1 update."""

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Augment float [B, 1, H, W] in [0, 1]; returns the same shape, clamped to [0, 1]."""
        parts = x.chunk(min(self.opts.groups, len(x)))
        return torch.cat([self.augment(p) for p in parts]).clamp_(0, 1)

    def train_step(self, ctx, x, y):
        return concat_step(ctx, x, y, self.apply(x))


@register
class RandAugmentMethod(_PolicyMethod):
    name = "randaugment"

    @dataclasses.dataclass
    class Options:
        n: PosInt = 2  #: operations per image (the paper's ImageNet setting and torchvision's default; at most the number of ops)
        m: Annotated[int, Range(ge=1, le=29)] = 9  #: magnitude, 1..29 of 30
        ops: str = ""  #: comma list of kornia op names ('' = kornia's default policy without colour ops)
        groups: PosInt = 1  #: independent operation draws per batch (1 = kornia: one draw per batch)

        def __post_init__(self):
            policy = gray_policy(RA_POLICY, self.ops, "randaugment")
            if self.n > len(policy):
                raise ValueError(f"n must be in 1..{len(policy)} (the number of ops), not {self.n}")

    def setup(self, ctx) -> None:
        o = self.opts
        self.augment = KRandAugment(n=o.n, m=o.m, policy=gray_policy(RA_POLICY, o.ops, self.name)).to(ctx.device)


@register
class TrivialAugmentMethod(_PolicyMethod):
    name = "trivialaugment"

    @dataclasses.dataclass
    class Options:
        ops: str = ""  #: comma list of kornia op names ('' = kornia's default TrivialAugment policy)
        groups: PosInt = 1  #: independent operation draws per batch (1 = kornia: one draw per batch)

        def __post_init__(self):
            gray_policy(TA_POLICY, self.ops, "trivialaugment")

    def setup(self, ctx) -> None:
        self.augment = KTrivialAugment(policy=gray_policy(TA_POLICY, self.opts.ops, self.name)).to(ctx.device)
