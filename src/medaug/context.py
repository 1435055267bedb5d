"""What a method may use (:class:`Context`): the classifier and its update step, the loss, the
device, normalisation and DDP wrapping. The training loop builds one per run; a method never
imports the loop."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .device import autocast, place, to_full, unwrap
from .models.inputs import normalize


@dataclass
class Context:
    """What a method may use: the classifier, its update step, the device and the config."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    cfg: TrainConfig
    num_classes: int
    scaler: torch.amp.GradScaler
    extras: dict = field(default_factory=dict)  # baseline dir etc., for methods that need them
    rank: int = 0  #: this process under torchrun (0 otherwise)
    world: int = 1  #: number of data-parallel processes
    channels: int = 1  #: the images' channels, as the data has them: 1 (gray) or 3 (colour)

    def wrap(self, module: nn.Module) -> nn.Module:
        """DistributedDataParallel under torchrun (gradients averaged across processes); as is otherwise."""
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def place(self, module: nn.Module) -> nn.Module:
        """A method's network on the device, in the classifier's memory format, wrapped for DDP."""
        return self.wrap(place(module, self.device, self.cfg.channels_last))

    unwrap = staticmethod(unwrap)  #: the network inside a DDP wrapper (for saving, copying, hooks)

    def all_mean(self, t: torch.Tensor) -> torch.Tensor:
        """Mean of ``t`` over processes (every rank gets the same value); ``t`` itself when alone."""
        if self.world == 1:
            return t
        import torch.distributed as dist

        t = t.detach().clone()
        dist.all_reduce(t)
        return t / self.world

    def inputs(self, images: np.ndarray) -> torch.Tensor:
        """uint8 [B, C, H, W] (or gray [B, H, W]) -> float [B, C, H, W] in [0, 1] on the device."""
        x = torch.from_numpy(np.ascontiguousarray(images))
        x = x.unsqueeze(1) if x.dim() == 3 else x.view(len(x), -1).view(x.shape)  # the standard strides: numpy gives a
        return x.to(self.device, non_blocking=True).float().div_(255.0)            # size-1 channel axis odd ones

    @property
    def in_channels(self) -> int:
        """The classifier's input channels: the config's ``in_channels``, or (0) the images' ``channels``."""
        return self.cfg.in_channels or self.channels

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images [B, C, H, W] -> classifier input [B, in_channels, H, W] (:func:`medaug.models.inputs.normalize`)."""
        return normalize(x, self.in_channels)

    def logits(self, x: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
        """Classifier logits float32 [B, K] for images float [B, C, H, W] in [0, 1]."""
        with autocast(self.device, self.cfg.precision):
            out = (model or self.model)(self.normalize(x))
        return to_full(out)

    @staticmethod
    def loss(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The classification loss: cross-entropy of logits [B, K] with labels int64 [B] or soft targets
        float [B, K]; ``reduction='none'`` gives the per-image losses [B]."""
        return F.cross_entropy(logits, y, reduction=reduction)

    def step(self, loss: torch.Tensor, *optimizers: torch.optim.Optimizer) -> None:
        """zero_grad, one backward (loss-scaled for fp16), then step each optimizer (default: the classifier's)."""
        opts = optimizers or (self.optimizer,)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        for opt in opts:
            self.scaler.step(opt)
        self.scaler.update()
