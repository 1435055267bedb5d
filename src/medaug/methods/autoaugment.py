"""``randaugment`` and ``trivialaugment``: kornia's automatic augmentation policies, mixed 1:1 with the originals.

RandAugment (Cubuk et al. 2020) applies ``n`` operations drawn without replacement, all at one
magnitude ``m`` of 30; TrivialAugment (Mueller & Hutter 2021) applies one operation at a magnitude
drawn uniformly per image. Both are ``kornia.augmentation.auto`` on the device, on images
float [B, C, H, W] in [0, 1]:

- colour images (C = 3) get kornia's default policies with the colour operation ``color`` (a
  saturation change): RandAugment's as kornia has it (15 operations); TrivialAugment's (12 in
  kornia) plus ``color`` over RandAugment's range [0.1, 1.9], as in the paper's search space (13).
- gray images (C = 1): every operation runs on one channel except ``color`` (kornia raises on 1
  channel, and on a gray image it is the identity), so the gray policies are kornia's without it
  (RandAugment 14 operations, TrivialAugment kornia's 12). ``ops`` restricts either to a comma
  list of kornia's operation names.
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
from ..errors import MedaugError
from .base import Method, concat_step, register

COLOUR_OPS = {"color"}  # need 3 channels in kornia; the identity on a gray image
COLOUR_POLICY = [[("color", 0.1, 1.9)]]  # added to TrivialAugment's colour policy (kornia's has no colour op)
TA_COLOUR_POLICY = TA_POLICY + COLOUR_POLICY


def image_policy(default: list, ops: str, method: str, channels: int = 1) -> list:
    """kornia sub-policies [[(name, low, high)]] for images of ``channels`` (gray: without colour operations),
    restricted to ``ops`` (comma list) if given."""
    usable = {p[0][0]: p for p in default if channels == 3 or p[0][0] not in COLOUR_OPS}
    if not ops.strip():
        return list(usable.values())
    names = [n.strip() for n in ops.split(",") if n.strip()]
    unknown = [n for n in names if n not in usable]
    if unknown:
        kind = "colour" if channels == 3 else "gray"
        raise ValueError(f"ops {', '.join(unknown)} not in {method}'s {kind} policy; choose from {', '.join(usable)}")
    return [usable[n] for n in dict.fromkeys(names)]


def gray_policy(default: list, ops: str, method: str) -> list:
    """kornia sub-policies usable on 1 channel (:func:`image_policy` with ``channels = 1``)."""
    return image_policy(default, ops, method, 1)


def _setup_policy(method: Method, default: list, ctx) -> list:
    """The policy for ``ctx``'s images; a colour op named in ``ops`` on gray images is one clear line."""
    try:
        return image_policy(default, method.opts.ops, method.name, ctx.channels)
    except ValueError as exc:
        raise MedaugError(f"method {method.name!r}: {exc} (the data is gray)") from None


class _PolicyMethod(Method):
    """Shared step: augment with ``self.augment`` (per group of the batch), then the 1:1 update."""

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Augment float [B, C, H, W] in [0, 1]; returns the same shape, clamped to [0, 1]."""
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
        ops: str = ""  #: comma list of kornia op names ('' = kornia's default policy; gray images: without colour ops)
        groups: PosInt = 1  #: independent operation draws per batch (1 = kornia: one draw per batch)

        def __post_init__(self):
            policy = image_policy(RA_POLICY, self.ops, "randaugment", 3)  # gray images: checked again at setup
            if self.n > len(policy):
                raise ValueError(f"n must be in 1..{len(policy)} (the number of ops), not {self.n}")

    def setup(self, ctx) -> None:
        o = self.opts
        policy = _setup_policy(self, RA_POLICY, ctx)
        if o.n > len(policy):
            raise MedaugError(f"method 'randaugment': n {o.n} is more than the {len(policy)} operations of its gray policy")
        self.augment = KRandAugment(n=o.n, m=o.m, policy=policy).to(ctx.device)


@register
class TrivialAugmentMethod(_PolicyMethod):
    name = "trivialaugment"

    @dataclasses.dataclass
    class Options:
        ops: str = ""  #: comma list of kornia op names ('' = kornia's default TrivialAugment policy, plus color on colour images)
        groups: PosInt = 1  #: independent operation draws per batch (1 = kornia: one draw per batch)

        def __post_init__(self):
            image_policy(TA_COLOUR_POLICY, self.ops, "trivialaugment", 3)

    def setup(self, ctx) -> None:
        self.augment = KTrivialAugment(policy=_setup_policy(self, TA_COLOUR_POLICY, ctx)).to(ctx.device)
