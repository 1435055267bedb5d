"""One forward pass's BatchNorm statistics, reused by another pass (APGA's fused step).

``record_batch_stats(model)``: for the forward pass inside it, every BatchNorm layer in training
mode records the per-channel mean and biased variance it normalised that batch with.
``normalise_with(stats)``: inside it, those layers normalise with the recorded statistics instead
(eval-mode arithmetic on borrowed statistics; running statistics neither used nor updated). So a
pass on images z under ``normalise_with`` computes, row for row, what the recorded pass would have
computed for z had z been among its rows, without z changing the statistics. Each BatchNorm layer
may run once per recorded pass (no weight sharing).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

BatchStats = dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]  # layer -> (mean [C], biased var [C])


@contextmanager
def record_batch_stats(model: nn.Module) -> Iterator[BatchStats]:
    """Yield a dict that holds, once the block exits, each training-mode BatchNorm's batch statistics.

    The layers' own kernels compute them (no extra reduction): for the block, each layer's
    running buffers are swapped for scratch ones with momentum 1, so that after the forward pass
    they hold the batch mean and unbiased variance; on exit the real running statistics get the
    update the layer would have made. Layers without running statistics get a reduction instead.
    """
    stats: BatchStats = {}
    counts: dict[nn.Module, int] = {}  # values per channel in the recorded batch

    def hook(layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if layer in counts:
            raise RuntimeError(f"{type(layer).__name__} ran twice in one recorded pass; its statistics are ambiguous")
        x = inputs[0]
        counts[layer] = x.numel() // x.shape[1]
        if layer.running_mean is None:  # track_running_stats=False: compute them here
            x = x.detach()
            x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
            var, mean = torch.var_mean(x, dim=[0, *range(2, x.dim())], unbiased=False)
            stats[layer] = (mean, var)

    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training]
    saved = {m: (m.running_mean, m.running_var, m.momentum) for m in layers if m.running_mean is not None}
    for m in saved:
        m.running_mean, m.running_var, m.momentum = torch.zeros_like(m.running_mean), torch.ones_like(m.running_var), 1.0
    handles = [m.register_forward_pre_hook(hook) for m in layers]
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()
        for m, (running_mean, running_var, momentum) in saved.items():
            batch_mean, batch_var_unbiased = m.running_mean, m.running_var
            m.running_mean, m.running_var, m.momentum = running_mean, running_var, momentum
            if m not in counts:
                continue
            n = counts[m]
            factor = momentum if momentum is not None else 1.0 / m.num_batches_tracked.to(running_mean.dtype)
            running_mean.lerp_(batch_mean, factor)
            running_var.lerp_(batch_var_unbiased, factor)
            stats[m] = (batch_mean, batch_var_unbiased * ((n - 1) / n))


@contextmanager
def normalise_with(stats: BatchStats) -> Iterator[None]:
    """Inside: the recorded layers normalise with ``stats`` (their mode and buffers restored on exit)."""
    saved = [(layer, layer.training, layer.running_mean, layer.running_var) for layer in stats]
    try:
        for layer, (mean, var) in stats.items():
            layer.training = False  # eval arithmetic: (x - running_mean) / sqrt(running_var + eps)
            layer.running_mean, layer.running_var = mean, var
        yield
    finally:
        for layer, training, mean, var in saved:
            layer.training = training
            layer.running_mean, layer.running_var = mean, var


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Inside: ``model`` in eval mode (running statistics, no dropout); its previous mode restored on exit."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
