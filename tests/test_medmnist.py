"""MedMNIST v2's own model and protocol: the 28-px ResNets and the multistep schedule."""

from __future__ import annotations

import pytest
import torch

from medaug.config import TrainConfig
from medaug.errors import MedaugError
from medaug.models.classifiers import CAM_LAYERS, HEAD_LAYERS, create_classifier
from medaug.train import make_scheduler


@pytest.mark.parametrize("name", ["resnet18_small", "resnet50_small"])
def test_small_resnet_has_medmnist_stem_and_named_layers(name):
    net = create_classifier(name, 1, 3)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and net.conv1.padding == (1, 1)
    shapes = {}
    net.get_submodule(CAM_LAYERS[name]).register_forward_hook(lambda m, i, o: shapes.update(cam=tuple(o.shape)))
    net.eval()
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 3)
    assert shapes["cam"][-2:] == (4, 4)  # 28 -> 28 (stem, no max-pool) -> 14 -> 7 -> 4; the ImageNet stem gives 1 x 1
    assert net.get_submodule(HEAD_LAYERS[name]).out_features == 3
    big = create_classifier(name.removesuffix("_small"), 1, 3)
    assert big.conv1.kernel_size == (7, 7) and big.conv1.stride == (2, 2)


def _lrs(cfg: TrainConfig, epochs: int) -> list[float]:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = make_scheduler(opt, cfg)
    out = []
    for _ in range(epochs):  # the lr each epoch trains with
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_multistep_schedule_is_medmnist_protocol():
    cfg = TrainConfig(data="x", epochs=100, lr=1e-3, schedule="multistep", milestones=[50, 75])
    lrs = _lrs(cfg, 100)
    assert lrs[0] == lrs[49] == pytest.approx(1e-3)
    assert lrs[50] == lrs[74] == pytest.approx(1e-4)
    assert lrs[75] == lrs[99] == pytest.approx(1e-5)
    assert _lrs(TrainConfig(data="x", schedule="none"), 3) == [1e-3] * 3


@pytest.mark.parametrize("values, msg", [
    (dict(schedule="multistep"), "needs milestones"),
    (dict(schedule="multistep", milestones=[75, 50]), "increasing"),
    (dict(schedule="multistep", milestones=[0, 5]), "increasing whole epochs >= 1"),
    (dict(schedule="multistep", milestones=[5.5]), "whole epochs"),
    (dict(schedule="step"), "cosine, none or multistep"),
    (dict(lr_gamma=0.0), "lr_gamma"),
])
def test_multistep_config_is_validated(values, msg):
    with pytest.raises(MedaugError, match=msg):
        TrainConfig(data="x", **values)


def test_multistep_run_logs_its_schedule(tiny_cfg, tmp_path):
    from medaug.train import fit

    cfg = tiny_cfg(epochs=3, schedule="multistep", milestones=[1, 2], lr=1e-3, batch_size=32)
    fit(cfg, tmp_path / "r")
    import json

    rows = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    # each row's lr is the one after that epoch's scheduler step: x0.1 after epochs 1 and 2
    assert [r["lr"] for r in rows] == pytest.approx([1e-4, 1e-5, 1e-5])
