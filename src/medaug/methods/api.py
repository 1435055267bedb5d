"""medaug's methods in your own PyTorch training loop (``examples/own_loop.py``, docs/api.md).

    import medaug.methods as mm

    method = mm.create("cutout")                     # a name of mm.available(); options as keywords
    ctx = mm.context(model, optimizer, num_classes=2, size=32, epochs=10)
    method.setup(ctx)
    for epoch in range(10):
        model.train()
        for x, y in loader:                          # x float [B, C, H, W] in [0, 1]; y int64 [B]
            logs = method.train_step(ctx, x.to(ctx.device), y.to(ctx.device))
        method.epoch_end(ctx)
    model.eval()
    with torch.no_grad():
        logits = method.predict(ctx, x)              # [B, K]

``train_step`` makes every update of the batch itself (``ctx.step``: zero_grad, backward, step of
your optimizer), because learned methods (apga, pgnm, end2end) update their own networks from the
classifier's loss in the same step. Your images have ``channels`` C (1 gray, 3 colour); your model sees
``ctx.normalize(x)`` ((x - 0.5) / 0.25; a gray channel repeated when ``in_channels=3``), so evaluate
through ``method.predict`` or ``ctx.logits``.
Methods with ``needs_baseline`` (apga, gradcam, end2end) expect ``model`` to be a trained baseline
when ``setup`` runs: train it with ``create("none")`` first, as ``medaug run`` does.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..context import Context
from ..device import resolve_device
from ..errors import MedaugError
from .base import METHODS, Method, create_method


def available() -> list[str]:
    """The registered method names."""
    return METHODS.names()


def create(name: str, **options) -> Method:
    """Method ``name`` with ``options`` (unknown or ill-typed options are a clear error)."""
    return create_method(name, options)


def context(model: nn.Module, optimizer: torch.optim.Optimizer, *, num_classes: int, size: int, epochs: int,
            device: torch.device | str = "cpu", in_channels: int = 0, batch_size: int = 32, seed: int = 0,
            precision: str = "fp32", classifier: str = "", train_images: np.ndarray | None = None,
            classes: list[str] | None = None, channels: int = 1) -> Context:
    """The :class:`~medaug.context.Context` a method needs, for your model and optimizer.

    ``channels``: your images' channels, 1 (gray) or 3 (colour); ``model`` maps float
    [B, in_channels, size, size] (``in_channels`` 0 = ``channels``) to logits [B, num_classes] and is on ``device``;
    ``epochs`` and ``batch_size`` are your loop's (schedules of a method's own networks use them);
    ``seed`` seeds a method's own sampling; ``classifier``: the registered name ``model`` was built
    as (``create_classifier``), which gives gradcam and apga's prior their GradCAM layer ('' for your
    own network: then give gradcam ``layer=NAME`` and apga ``prior_steps=0``);
    ``train_images``: uint8 [N, C, size, size] (or gray [N, size, size]), needed by apga's GradCAM prior (``prior_steps``);
    ``classes``: class names (the generative method maps sample folders to them).
    """
    device = resolve_device(device) if isinstance(device, str) else device
    if channels not in (1, 3):
        raise MedaugError(f"context: channels {channels}: give 1 (gray) or 3 (colour)")
    cfg = TrainConfig(data="", size=size, epochs=epochs, batch_size=batch_size, seed=seed, in_channels=in_channels or channels,
                      precision=precision, model=classifier)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16" and device.type == "cuda")  # as the loop does
    if train_images is not None and train_images.ndim == 3:
        train_images = train_images[:, None]  # gray [N, S, S] -> [N, 1, S, S]
    extras = {"train_images": train_images, "classes": classes}
    return Context(model, optimizer, device, cfg, num_classes, scaler, extras={k: v for k, v in extras.items() if v is not None},
                   channels=channels)
