"""``mixup`` and ``cutmix``: batch-level mixing of image pairs with soft labels, mixed 1:1 with the originals.

Each image is paired with another of the batch (a random permutation, as both papers' code does)
and mixed with weight lam ~ Beta(alpha, alpha):

- ``mixup`` (Zhang et al. 2018): x_mix = lam * x + (1 - lam) * x[perm].
- ``cutmix`` (Yun et al. 2019): a box of area (1 - lam) of the image, centre uniform, clipped at the
  borders, is pasted from x[perm]; lam is then the kept fraction of pixels (the paper's correction).

The target of a mixed image is lam * onehot(y) + (1 - lam) * onehot(y[perm]), so its cross-entropy
is lam * CE(y) + (1 - lam) * CE(y[perm]). As for the other baselines the classifier trains on the
originals and the mixed copies together (1:1, ``concat_step`` with soft targets). ``per_image``:
one lam per image (timm's "elem" mode) instead of the papers' one lam per batch.
kornia's RandomMixUpV2 draws lam uniformly rather than from Beta(alpha, alpha), so the mixing is
written here (a few tensor lines, on the device, no host synchronisation).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..config import PosFloat
from .base import Method, concat_step, register
from .cutout import rectangle_keep_masks


def draw_lam(alpha: float, n: int, device: torch.device) -> torch.Tensor:
    """n mixing weights float [n] from Beta(alpha, alpha)."""
    a = torch.tensor(float(alpha), device=device)
    return torch.distributions.Beta(a, a).sample((n,))


def mix_targets(y: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Soft targets float [B, K]: lam * onehot(y) + (1 - lam) * onehot(y[perm]); y int64 [B], lam [B]."""
    onehot = F.one_hot(y, num_classes).float()
    lam = lam.view(-1, 1).float()
    return lam * onehot + (1 - lam) * onehot[perm]


def cutmix_boxes(lam: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Keep-masks float {0, 1} [B, 1, H, W]: each erases a box of (1 - lam) of the area, centre uniform, clipped."""
    b = len(lam)
    cut = (1 - lam).clamp(0, 1).sqrt()
    sizes = torch.stack([cut * height, cut * width], 1)
    centres = torch.rand(b, 2, device=lam.device) * torch.tensor([height, width], device=lam.device, dtype=lam.dtype)
    return rectangle_keep_masks(centres, sizes, height, width)


class _MixMethod(Method):
    """Shared step: pair by a random permutation, mix, then the 1:1 update with soft targets."""

    def mix(self, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixed images float [B, C, H, W] and their soft targets float [B, K]."""
        raise NotImplementedError

    def train_step(self, ctx, x, y):
        x_mix, t_mix = self.mix(x, y, ctx.num_classes)
        return concat_step(ctx, x, y, x_mix, t_mix)


@register
class MixUp(_MixMethod):
    name = "mixup"

    @dataclasses.dataclass
    class Options:
        alpha: PosFloat = 0.2  #: lam ~ Beta(alpha, alpha) (the paper's ImageNet value)
        per_image: bool = False  #: one lam per image instead of one per batch

    def mix(self, x, y, num_classes):
        perm = torch.randperm(len(x), device=x.device)
        lam = draw_lam(self.opts.alpha, len(x) if self.opts.per_image else 1, x.device).expand(len(x))
        w = lam.view(-1, 1, 1, 1).to(x.dtype)
        return w * x + (1 - w) * x[perm], mix_targets(y, perm, lam, num_classes)


@register
class CutMix(_MixMethod):
    name = "cutmix"

    @dataclasses.dataclass
    class Options:
        alpha: PosFloat = 1.0  #: lam ~ Beta(alpha, alpha) (the paper's value)
        per_image: bool = False  #: one lam and box per image instead of one per batch

    def mix(self, x, y, num_classes):
        b, _, h, w = x.shape
        perm = torch.randperm(b, device=x.device)
        lam = draw_lam(self.opts.alpha, b if self.opts.per_image else 1, x.device)
        keep = cutmix_boxes(lam, h, w).expand(b, -1, -1, -1)  # one box per image, or one for the batch
        lam = keep.mean(dim=(1, 2, 3))  # the kept fraction after clipping
        return keep * x + (1 - keep) * x[perm], mix_targets(y, perm, lam, num_classes)
