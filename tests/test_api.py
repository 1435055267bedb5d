"""The public Python API (docs/api.md): a medaug method in one's own PyTorch loop, as
examples/own_loop.py shows it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import medaug.methods as mm
from medaug.errors import MedaugError

ROOT = Path(__file__).resolve().parents[1]


def test_own_loop_example_trains_with_apga():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "own_loop.py"), "--epochs", "1"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert re.search(r"^none epoch 1: loss \d", out, re.M)  # the baseline apga starts from
    assert re.search(r"^apga epoch 1: loss \d.*kept_fraction 0\.\d+", out, re.M)  # apga's own step ran
    auroc = float(re.search(r"^apga: test AUROC (\d\.\d+)$", out, re.M).group(1))
    assert 0.0 <= auroc <= 1.0


def test_a_method_on_your_own_network():
    """An unregistered nn.Module and optimizer: the method steps it, predicts through the same
    normalisation, and a method that needs a layer says which option to set."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ctx = mm.context(net, opt, num_classes=2, size=16, epochs=1, in_channels=3)
    assert ctx.device == torch.device("cpu") and ctx.cfg.in_channels == 3
    x, y = torch.rand(4, 1, 16, 16), torch.tensor([0, 1, 1, 0])
    method = mm.create("mixup", alpha=0.4)
    method.setup(ctx)
    before = net[-1].weight.detach().clone()
    logs = method.train_step(ctx, x, y)
    assert torch.isfinite(logs["loss"]) and not torch.equal(before, net[-1].weight)
    net.eval()
    assert torch.equal(method.predict(ctx, x), net(ctx.normalize(x)))
    with pytest.raises(MedaugError, match="set option layer=NAME"):
        mm.create("gradcam").setup(ctx)
    mm.create("gradcam", layer="2").setup(ctx)  # the ReLU's feature map
    apga = mm.create("apga", prior_steps=0)  # its GradCAM prior needs a registered classifier's layer
    apga.setup(ctx)
    assert 0 < float(apga.train_step(ctx, x, y)["kept_fraction"]) < 1
    ctx.extras["train_images"] = (x[:, 0] * 255).to(torch.uint8).numpy()
    with pytest.raises(MedaugError, match="apga: layer '' not in model ''; set the option prior_steps=0"):
        mm.create("apga").setup(ctx)
    with pytest.raises(MedaugError, match="unknown option"):
        mm.create("cutout", sise=3)
    assert mm.available() == mm.METHODS.names() and "apga" in mm.available()


def test_synthetic_arrays_in_memory():
    from medaug.data.synth import arrays

    x, y = arrays(6, 16, seed=3)
    assert x.shape == (6, 16, 16) and x.dtype.name == "uint8" and y.tolist() == [0, 1, 0, 1, 0, 1]
    assert (x == arrays(6, 16, seed=3)[0]).all() and not (x == arrays(6, 16, seed=4)[0]).all()  # seeded
    with pytest.raises(MedaugError, match="n >= 1"):
        arrays(0)


def test_apga_diagnosis_example_probes_the_reward_and_scores_the_prior(tiny_cfg, tmp_path):
    """examples/apga_diagnosis.py (docs/apga.md's diagnosis): loss rises per fill and the prior's ROI scores."""
    from medaug.train import fit

    cfg = tiny_cfg(method="none", epochs=2)
    fit(cfg, tmp_path / "none")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    common = ["--data", cfg.data, "--baseline", str(tmp_path / "none"), "--size", "32"]
    probe = subprocess.run([sys.executable, str(ROOT / "examples" / "apga_diagnosis.py"), "probe", *common],
                           capture_output=True, text=True, env=env, timeout=300)
    assert probe.returncode == 0, probe.stderr[-2000:]
    rises = re.findall(r"^fill (\w+): loss rise erasing the finding ([+-]\d\.\d+) \+- \d\.\d+, the shifted mask ([+-]\d\.\d+)",
                       probe.stdout, re.M)
    assert [fill for fill, *_ in rises] == ["zero", "mean", "blur"]
    prior = subprocess.run([sys.executable, str(ROOT / "examples" / "apga_diagnosis.py"), "prior", *common,
                            "-o", "policy_width=4", "-o", "prior_steps=5"], capture_output=True, text=True, env=env, timeout=300)
    assert prior.returncode == 0, prior.stderr[-2000:]
    scores = re.search(r"^prior \{.*'prior_steps': 5\}: saliency AUROC (\d\.\d+) pointing (\d\.\d+) mask IoU (\d\.\d+)$",
                       prior.stdout, re.M)
    assert scores and all(0.0 <= float(v) <= 1.0 for v in scores.groups())
    # policy: a finished run's policy scored on its test split reproduces the run's own mask metrics
    apga = fit(tiny_cfg(method="apga", epochs=2, baseline=str(tmp_path / "none"),
                        method_options={"policy_width": 4, "prior_steps": 5}), tmp_path / "apga")
    policy = subprocess.run([sys.executable, str(ROOT / "examples" / "apga_diagnosis.py"), "policy", "--data", cfg.data,
                             "--run", str(tmp_path / "apga"), "--size", "32", "--split", "test"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert policy.returncode == 0, policy.stderr[-2000:]
    scores = re.search(r"saliency AUROC (\d\.\d+) pointing (\d\.\d+) mask IoU (\d\.\d+)$", policy.stdout, re.M)
    assert scores, policy.stdout
    expected = apga["mask"]
    assert [float(v) for v in scores.groups()] == pytest.approx(
        [expected["saliency_auroc"], expected["pointing"], expected["mask_iou"]], abs=6e-4)
