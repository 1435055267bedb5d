"""The one mapping from images in [0, 1] to network input, shared by the classifier (``Context``),
the pixel policies and the feature extractor of the generative quality metrics."""

from __future__ import annotations

import torch

MEAN, STD = 0.5, 0.25  #: centre and scale of every channel of the network input: (x - MEAN) / STD
LUMA = (0.299, 0.587, 0.114)  #: RGB -> luminance (ITU-R 601) for a 1-channel network on colour images


def normalize(x: torch.Tensor, channels: int = 1) -> torch.Tensor:
    """Images float [B, C, H, W] in [0, 1] (C = 1 gray, 3 colour) -> network input float [B, channels, H, W],
    zero-centred. C = channels: as is; a gray image for a 3-channel network (an RGB-pretrained one):
    its channel repeated (a view, no copy); a colour image for a 1-channel network: its luminance."""
    x = (x - MEAN) / STD
    if channels == x.shape[1]:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1)
    if channels == 1 and x.shape[1] == 3:
        w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    raise ValueError(f"normalize: images with {x.shape[1]} channels cannot feed a network of {channels}")
