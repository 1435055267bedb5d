"""The one mapping from images in [0, 1] to network input, shared by the classifier (``Context``),
the pixel policies and the feature extractor of the generative quality metrics."""

from __future__ import annotations

import torch

MEAN, STD = 0.5, 0.25  #: gray-level centre and scale of the network input: (x - MEAN) / STD


def normalize(x: torch.Tensor, channels: int = 1) -> torch.Tensor:
    """Images float [B, 1, H, W] in [0, 1] -> network input float [B, channels, H, W], zero-centred,
    the gray channel repeated (a view, no copy) when a network takes ``channels`` = 3."""
    x = (x - MEAN) / STD
    return x.expand(-1, channels, -1, -1) if channels != x.shape[1] else x
