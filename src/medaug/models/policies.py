"""Segmentation networks used as pixel policies (APGA, end-to-end masking), by name.

Every policy maps float [B, C, h, w] (normalised images) to logits [B, 1, h, w]; the pixel
probability of being *useful* is ``sigmoid(logits)``.

- ``ternaus``: TernausNet-11 (Iglovikov & Shvets 2018), a UNet whose encoder is VGG11's
  convolutions (64-128-256x2-512x2-512x2) and whose decoder uses transposed convolutions.
  ``width`` scales every layer (64 = the original; 8-16 for CPU runs).
- ``basicunet``: MONAI's BasicUNet with features scaled by ``width``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..device import to_full
from ..errors import MedaugError
from ..registry import Registry
from .inputs import normalize

POLICIES: Registry[nn.Module] = Registry("policy")


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))


class _DecoderBlock(nn.Sequential):
    """conv3x3 then a stride-2 transposed conv: doubles the resolution (TernausNet's decoder)."""

    def __init__(self, cin: int, mid: int, cout: int):
        super().__init__(_conv(cin, mid), nn.ConvTranspose2d(mid, cout, 3, stride=2, padding=1, output_padding=1), nn.ReLU(inplace=True))


class TernausNet11(nn.Module):
    """UNet with a VGG11 encoder. Input side must be divisible by 32."""

    multiple = 32

    def __init__(self, in_channels: int = 1, width: int = 64):
        super().__init__()
        w = width
        self.pool = nn.MaxPool2d(2)
        self.conv1 = _conv(in_channels, w)
        self.conv2 = _conv(w, 2 * w)
        self.conv3 = nn.Sequential(_conv(2 * w, 4 * w), _conv(4 * w, 4 * w))
        self.conv4 = nn.Sequential(_conv(4 * w, 8 * w), _conv(8 * w, 8 * w))
        self.conv5 = nn.Sequential(_conv(8 * w, 8 * w), _conv(8 * w, 8 * w))
        self.center = _DecoderBlock(8 * w, 8 * w, 4 * w)
        self.dec5 = _DecoderBlock(12 * w, 8 * w, 4 * w)
        self.dec4 = _DecoderBlock(12 * w, 8 * w, 2 * w)
        self.dec3 = _DecoderBlock(6 * w, 4 * w, w)
        self.dec2 = _DecoderBlock(3 * w, 2 * w, w // 2)
        self.dec1 = _conv(w + w // 2, w)
        self.final = nn.Conv2d(w, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = self.conv1(x)
        c2 = self.conv2(self.pool(c1))
        c3 = self.conv3(self.pool(c2))
        c4 = self.conv4(self.pool(c3))
        c5 = self.conv5(self.pool(c4))
        center = self.center(self.pool(c5))
        d5 = self.dec5(torch.cat([center, c5], 1))
        d4 = self.dec4(torch.cat([d5, c4], 1))
        d3 = self.dec3(torch.cat([d4, c3], 1))
        d2 = self.dec2(torch.cat([d3, c2], 1))
        d1 = self.dec1(torch.cat([d2, c1], 1))
        return self.final(d1)


@POLICIES.register("ternaus")
def ternaus(in_channels: int = 1, width: int = 64) -> nn.Module:
    return TernausNet11(in_channels, width)


@POLICIES.register("basicunet")
def basicunet(in_channels: int = 1, width: int = 32) -> nn.Module:
    from monai.networks.nets import BasicUNet

    w = width
    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=1, features=(w, w, 2 * w, 4 * w, 8 * w, w))


def create_policy(name: str, in_channels: int = 1, width: int = 16, pretrained: str = "") -> nn.Module:
    """Build policy ``name``; load local weights from ``pretrained`` when given."""
    net = POLICIES.create(name, in_channels, width)
    if pretrained:
        from .weights import load_pretrained

        load_pretrained(net, pretrained, arch=name)
    return net


class PixelPolicy(nn.Module):
    """A segmentation network run at ``size`` px (0 = the image's size) on normalised images.

    ``forward(x)``: x float [B, C, H, W] in [0, 1] (C = ``in_channels``) -> probabilities float32 [B, 1, h, w] at the
    policy's resolution: ``size`` (or H) rounded up to the network's input multiple (32 for
    TernausNet), so 28 px MedMNIST images run the policy at 32 px. ``upsample(m, H, W)`` brings a
    mask at policy resolution to the image.
    """

    def __init__(self, net: nn.Module, size: int = 0, in_channels: int = 1):
        super().__init__()
        self.net, self.size, self.in_channels = net, size, in_channels
        self.multiple = getattr(net, "multiple", 16)
        if size < 0:
            raise MedaugError(f"policy_size {size} is negative; use 0 (the image side) or a side in pixels, e.g. 32")

    def side(self, image_side: int) -> int:
        """The policy's working side for images of ``image_side`` px: the requested side rounded up to the multiple."""
        side = self.size or image_side
        return -(-side // self.multiple) * self.multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = self.side(x.shape[-1])
        if x.shape[-2:] != (side, side):
            x = nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        return torch.sigmoid(to_full(self.net(normalize(x, self.in_channels))))

    @staticmethod
    def upsample(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Nearest-neighbour upsampling of a {0,1} mask [B, 1, h, w] to [B, 1, H, W]."""
        if mask.shape[-2:] == (height, width):
            return mask
        return nn.functional.interpolate(mask, size=(height, width), mode="nearest")
