"""``gradcam``: masks from GradCAM of the trained ``none`` model, salient part kept, mixed 1:1.

A frozen copy of the baseline classifier (the best ``none`` checkpoint, which the trained
classifier also starts from) gives, per image, the class activation map of its top prediction
at ``layer`` (default: the model's last feature map, ``features.norm5`` for DenseNet as in the
authors' code):

    cam = ReLU( sum_k  mean_{ij}(d score_c / d A_k) * A_k ),  upsampled, divided by its max

and the keep-mask is ``cam > threshold`` (0.5). Written directly with hooks rather than MONAI's
GradCAM, whose default post-processing rescales each map and which zeroes the model's gradients;
here the frozen copy's gradients are separate from the trained classifier's, and batches work.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F

from ..config import Prob
from ..errors import MedaugError
from ..models.classifiers import CLASSIFIERS, classifier_info
from .base import Method, concat_step, register


def grad_cam(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """GradCAM maps float [B, 1, H, W] in [0, 1] (per-image max = 1) for network input x [B, C, H, W].

    ``target`` int64 [B] classes (default: the top prediction). ``model`` gradients are left untouched
    (torch.autograd.grad, not backward).
    """
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("act", o))
    try:
        with torch.enable_grad():
            # the input carries the graph, so a frozen model (no parameter grads) still yields dA
            scores = model(x.detach().requires_grad_(True))
            act = store["act"]
            target = scores.argmax(1) if target is None else target
            chosen = scores.gather(1, target[:, None]).sum()
            (grads,) = torch.autograd.grad(chosen, act)
    finally:
        handle.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return cam / cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)


def cam_layer(model: torch.nn.Module, model_name: str, layer: str = "", method: str = "gradcam",
              fix: str = "set option layer=NAME") -> torch.nn.Module:
    """The module GradCAM reads in ``model``: ``layer`` by name, or the classifier's default (its
    ``ClassifierInfo.cam``); ``fix`` ends the error when there is none."""
    name = layer or (classifier_info(model_name).cam if model_name in CLASSIFIERS else "")
    modules = dict(model.named_modules())
    if not name or name not in modules:  # '' names the whole network, not a layer
        raise MedaugError(f"method {method}: layer {name!r} not in model {model_name!r}; {fix}")
    return modules[name]


@register
class GradCAMMasks(Method):
    name = "gradcam"
    needs_baseline = True

    @dataclasses.dataclass
    class Options:
        layer: str = ""  #: module name of the target layer ('' = the model's default, e.g. features.norm5)
        threshold: Prob = 0.5  #: keep pixels whose normalised CAM exceeds this

    def setup(self, ctx) -> None:
        self.saliency_model = copy.deepcopy(ctx.unwrap(ctx.model)).eval()  # the trained baseline, frozen
        for p in self.saliency_model.parameters():
            p.requires_grad_(False)
        self.layer = cam_layer(self.saliency_model, ctx.cfg.model, self.opts.layer, "gradcam")

    def saliency(self, ctx, x: torch.Tensor) -> torch.Tensor:
        """GradCAM maps of the frozen baseline, float [B, 1, H, W] in [0, 1]."""
        return grad_cam(self.saliency_model, self.layer, ctx.normalize(x))

    def keep_masks(self, ctx, x: torch.Tensor) -> torch.Tensor:
        """Keep-masks float {0, 1} [B, 1, H, W]: the salient part of each image."""
        return (self.saliency(ctx, x) > self.opts.threshold).to(x.dtype)

    def train_step(self, ctx, x, y):
        return concat_step(ctx, x, y, x * self.keep_masks(ctx, x))

    def masks(self, ctx, x):
        return self.keep_masks(ctx, x)
