"""Classifier registry over MONAI networks, plus a tiny CNN for fast tests and CPU demos.

``create_classifier(name, in_channels, num_classes, pretrained=path)``: every network maps
float [B, C, H, W] to logits [B, num_classes]. Each entry carries a :class:`ClassifierInfo` (head
layer, GradCAM layer, small stem): a new classifier is one registered factory with its info.
``resnet18_small`` / ``resnet50_small`` are the 28-px ResNets of the MedMNIST v2 benchmark: a 3x3
stride-1 stem and no max-pool (a 28-px input reaches layer4 at 4 x 4 instead of 1 x 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..registry import Registry

CLASSIFIERS: Registry[nn.Module] = Registry("model")


@dataclass(frozen=True)
class ClassifierInfo:
    """What medaug needs to know about a registered classifier besides how to build it."""

    head: str  #: the final nn.Linear: re-initialised when pretrained weights have another class count; a linear probe trains only it
    cam: str  #: GradCAM's default target layer: the last feature map before pooling
    small_stem: bool = False  #: 3x3 stride-1 stem without max-pool (MedMNIST v2's 28-px ResNets)


def classifier_info(name: str) -> ClassifierInfo:
    """The :class:`ClassifierInfo` of classifier ``name`` (a clear error for an unknown name)."""
    return CLASSIFIERS.info(name)


class TinyCNN(nn.Module):
    """Four conv blocks (16-32-64-64 channels) and a linear head; ~70k parameters."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 16):
        super().__init__()

        def block(cin: int, cout: int, pool: bool) -> nn.Sequential:
            layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            return nn.Sequential(*layers, nn.MaxPool2d(2)) if pool else nn.Sequential(*layers)

        w = width
        self.features = nn.Sequential(block(in_channels, w, True), block(w, 2 * w, True), block(2 * w, 4 * w, True), block(4 * w, 4 * w, False))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(4 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@CLASSIFIERS.register("tiny", ClassifierInfo(head="head.3", cam="features.3"))
def tiny(in_channels: int, num_classes: int) -> nn.Module:
    return TinyCNN(in_channels, num_classes)


def _monai_densenet(cls_name: str):
    def make(in_channels: int, num_classes: int) -> nn.Module:
        from monai.networks import nets

        return getattr(nets, cls_name)(spatial_dims=2, in_channels=in_channels, out_channels=num_classes)

    return make


def _monai_resnet(fn_name: str, info: ClassifierInfo):
    def make(in_channels: int, num_classes: int) -> nn.Module:
        from monai.networks import nets

        # standard (torchvision/ImageNet) stem: 7x7 stride 2 + max-pool (MONAI's default stride is 1);
        # small (MedMNIST v2's 28-px ResNets): 3x3 stride 1, no max-pool
        stem = dict(conv1_t_size=3, conv1_t_stride=1, no_max_pool=True) if info.small_stem else dict(conv1_t_stride=2)
        return getattr(nets, fn_name)(spatial_dims=2, n_input_channels=in_channels, num_classes=num_classes, **stem)

    return make


DENSENET = ClassifierInfo(head="class_layers.out", cam="features.norm5")
RESNET = ClassifierInfo(head="fc", cam="layer4")
RESNET_SMALL = ClassifierInfo(head="fc", cam="layer4", small_stem=True)
CLASSIFIERS.register("densenet121", DENSENET)(_monai_densenet("DenseNet121"))
CLASSIFIERS.register("densenet169", DENSENET)(_monai_densenet("DenseNet169"))
CLASSIFIERS.register("resnet18", RESNET)(_monai_resnet("resnet18", RESNET))
CLASSIFIERS.register("resnet50", RESNET)(_monai_resnet("resnet50", RESNET))
CLASSIFIERS.register("resnet18_small", RESNET_SMALL)(_monai_resnet("resnet18", RESNET_SMALL))
CLASSIFIERS.register("resnet50_small", RESNET_SMALL)(_monai_resnet("resnet50", RESNET_SMALL))


def create_classifier(name: str, in_channels: int = 1, num_classes: int = 2, pretrained: str | Path | None = None) -> nn.Module:
    """Build classifier ``name``; load local weights from ``pretrained`` when given (never downloads)."""
    model = CLASSIFIERS.create(name, in_channels, num_classes)
    if pretrained:
        from .weights import load_pretrained

        load_pretrained(model, pretrained, arch=name, head=classifier_info(name).head)
    return model
