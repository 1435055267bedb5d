"""Reusing one pass's BatchNorm statistics in another (medaug.models.batch_stats), in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medaug.models.batch_stats import eval_mode, normalise_with, record_batch_stats
from medaug.models.classifiers import create_classifier


def net(momentum: float | None = 0.1, track: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=momentum, track_running_stats=track),
                         nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1), nn.BatchNorm2d(3, momentum=momentum, track_running_stats=track),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)).double().train()


@pytest.mark.parametrize("momentum,track", [(0.1, True), (None, True), (0.1, False)])
def test_rows_under_borrowed_statistics_equal_the_recorded_pass(momentum, track):
    """A pass on a subset of the recorded batch under normalise_with gives those rows' recorded
    outputs; the recorded pass updates the running statistics exactly as a plain training pass
    does; the borrowed pass leaves them and the layers' training mode alone."""
    model, plain = net(momentum, track), net(momentum, track)
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64)
    plain(x)  # one earlier batch, so momentum=None (cumulative average) has history to blend
    model(x)
    x = torch.rand(10, 1, 8, 8, dtype=torch.float64)
    want = plain(x)
    with record_batch_stats(model) as stats:
        got = model(x)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert len(stats) == 2
    for a, b in zip(model.buffers(), plain.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    before = [t.clone() for t in model.buffers()]
    with torch.no_grad(), normalise_with(stats):
        rows = model(x[3:7])
    torch.testing.assert_close(rows, want[3:7].detach(), rtol=1e-10, atol=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), before))
    assert all(m.training for m in model.modules())
    assert not any(m._forward_pre_hooks for m in model.modules())  # the recording hooks are gone


def test_classifiers_reuse_statistics_in_channels_last():
    """The tiny CNN, stored NHWC: rows normalised with the whole batch's statistics (dropout off)."""
    torch.manual_seed(1)
    model = create_classifier("tiny", 1, 2).double().to(memory_format=torch.channels_last).train()
    model.head[2].eval()  # its Dropout: random in training mode
    x = torch.rand(8, 1, 32, 32, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    with record_batch_stats(model) as stats:
        full = model(x)
    with torch.no_grad(), normalise_with(stats):
        torch.testing.assert_close(model(x[:2]), full[:2].detach(), rtol=1e-10, atol=1e-12)


def test_layer_run_twice_in_one_recorded_pass_is_refused():
    bn = nn.BatchNorm1d(3).double()
    with pytest.raises(RuntimeError, match="ran twice"), record_batch_stats(bn):
        bn(bn(torch.rand(4, 3, dtype=torch.float64)))


def test_eval_mode_restores_the_previous_mode():
    model = net()
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert all(m.training for m in model.modules())
    model.eval()
    with eval_mode(model):
        pass
    assert not model.training
