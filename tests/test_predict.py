"""A trained run as a model: `medaug predict` (the run's preprocessing and test-time rule), `medaug export`
(TorchScript and ONNX, checked against the run's test predictions to 1e-5) and the model card."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medaug.config import TrainConfig
from medaug.errors import MedaugError
from medaug.inference import ATOL, as_float, export_run, load_run, predict_table
from medaug.train import fit, load_data


def medaug(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"}
    return subprocess.run([sys.executable, "-m", "medaug", *map(str, args)], capture_output=True, text=True, env=env)


def busi(root: Path) -> Path:
    """Breast-ultrasound style folders with spaces in the names, '<stem>_mask.png' and '<stem>_mask_1.png'."""
    rng = np.random.default_rng(0)
    for cls, brightness in (("benign", 60), ("malignant", 180)):
        for i in range(1, 21):
            img = np.clip(rng.normal(brightness, 40, (40, 40)), 0, 255).astype(np.uint8)
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / cls / f"{cls} ({i}).png")
            mask = np.zeros((40, 40), np.uint8)
            mask[10:20, 10:20] = 255
            Image.fromarray(mask).save(root / cls / f"{cls} ({i})_mask.png")
            if i == 1:
                Image.fromarray(mask.T.copy()).save(root / cls / f"{cls} ({i})_mask_1.png")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """none on a BUSI-like folder; none, apga with tta and staged / unstaged pgnm on the synthetic radiographs."""
    base = tmp_path_factory.mktemp("predict")
    data = busi(base / "Dataset_BUSI_with_GT")
    common = dict(size=24, epochs=1, batch_size=8, progress=False)
    fit(TrainConfig(data=str(data), **common), base / "busi-none")
    from medaug.data.synth import generate

    synth = generate(base / "synth", n_train=96, n_test=48, size=32, seed=0, progress=False)
    common = dict(data=str(synth), size=32, epochs=2, batch_size=16, progress=False)
    fit(TrainConfig(**common), base / "none")
    fit(TrainConfig(**common, method="apga", baseline=str(base / "none"), method_options={"tta": True, "prior_steps": 5}),
        base / "apga-tta")
    fit(TrainConfig(**common, method="pgnm", finetune_epochs=1), base / "pgnm-staged")
    fit(TrainConfig(**common, method="pgnm", finetune_epochs=0), base / "pgnm-noise")
    return base


def test_predict_uses_the_runs_preprocessing_and_reproduces_its_test_predictions(runs):
    run = runs / "busi-none"
    loaded = load_run(run)
    test = load_data(loaded.cfg).test
    table = predict_table(loaded, list(test.paths))
    saved = np.load(run / "predictions.npz")["probs"]
    probs = table[[f"p_{c}" for c in loaded.classes]].to_numpy()
    assert np.abs(probs - saved).max() < 1e-6  # same decoding, resizing and model as the run's test split
    assert list(table["predicted"]) == [loaded.classes[i] for i in saved.argmax(1)]
    # folders (searched recursively) and files with spaces; masks are never predicted as images
    proc = medaug("predict", run, runs / "Dataset_BUSI_with_GT" / "benign", runs / "Dataset_BUSI_with_GT" / "malignant" / "malignant (3).png")
    assert proc.returncode == 0, proc.stderr
    csv = pd.read_csv(io.StringIO(proc.stdout))
    assert list(csv.columns) == ["path", "predicted", "p_benign", "p_malignant"] and len(csv) == 21
    assert not csv["path"].str.contains("_mask").any() and csv["path"].iloc[-1].endswith("malignant (3).png")
    assert np.allclose(csv[["p_benign", "p_malignant"]].sum(axis=1), 1, atol=1e-5)
    assert "predicted 21 image(s)" in proc.stderr and "test-time rule: none (the plain classifier)" in proc.stderr
    out = runs / "pred.csv"
    assert medaug("predict", run, runs / "Dataset_BUSI_with_GT" / "benign", "--out", out).returncode == 0
    assert len(pd.read_csv(out)) == 20
    again = medaug("predict", run, runs / "Dataset_BUSI_with_GT", "--out", out)  # never overwrites a file
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    missing = medaug("predict", run, runs / "nope.png")
    assert missing.returncode == 2 and "nope.png: no such file or folder" in " ".join(missing.stderr.split())
    notrun = medaug("predict", runs / "Dataset_BUSI_with_GT", runs / "pred.csv")
    assert notrun.returncode == 2 and "not a finished run" in " ".join(notrun.stderr.split())


def test_predict_applies_the_methods_test_time_rule(runs):
    """APGA with tta averages the image's and the masked image's softmax; a staged pgnm run predicts with its
    fine-tuned plain classifier (stage 2), not with its noise."""
    for name, rule in (("apga-tta", "tta: the mean of the softmax"), ("pgnm-staged", "")):
        loaded = load_run(runs / name)
        assert loaded.rule.startswith(rule) if rule else loaded.rule == ""
        test = load_data(loaded.cfg).test
        probs = predict_table(loaded, list(test.paths))[[f"p_{c}" for c in loaded.classes]].to_numpy()
        assert np.abs(probs - np.load(runs / name / "predictions.npz")["probs"]).max() < 1e-6, name
    plain = load_run(runs / "apga-tta")
    plain.method, plain.rule = __import__("medaug.methods", fromlist=["create_method"]).create_method("none"), ""
    test = load_data(plain.cfg).test
    without = predict_table(plain, list(test.paths))[[f"p_{c}" for c in plain.classes]].to_numpy()
    assert np.abs(without - np.load(runs / "apga-tta" / "predictions.npz")["probs"]).max() > 1e-4  # the rule matters


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_reproduces_the_runs_test_probabilities(runs, fmt, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="pip install 'medaug[onnx]' (requirements-lock.txt installs it)")
    out = tmp_path / f"apga.{'pt' if fmt == 'torchscript' else 'onnx'}"
    proc = medaug("export", runs / "apga-tta", "--format", fmt, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "with the method's test-time rule" in proc.stdout and "reproduces the run's predictions.npz" in proc.stdout
    saved = np.load(runs / "apga-tta" / "predictions.npz")["probs"]
    test = load_data(load_run(runs / "apga-tta").cfg).test
    x = as_float(test.images)  # float32 [N, C, S, S] in [0, 1]
    if fmt == "torchscript":
        got = torch.cat([torch.jit.load(str(out))(x[i:i + 5]) for i in range(0, len(x), 5)]).double().numpy()  # any batch size
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = np.concatenate([session.run(["probs"], {"images": x[i:i + 5].numpy()})[0] for i in range(0, len(x), 5)])
    assert np.abs(got - saved).max() <= ATOL
    card = (tmp_path / f"{out.name}.model_card.md").read_text()
    assert "## Export" in card and "test-time rule inside: tta" in card and "reproduces the run's predictions.npz" in card
    again = medaug("export", runs / "apga-tta", "--format", fmt, "--out", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert medaug("export", runs / "apga-tta", "--format", fmt, "--out", out, "--overwrite").returncode == 0
    mine = tmp_path / f"mine.{'pt' if fmt == 'torchscript' else 'onnx'}"
    mine.write_bytes(b"a user's file")
    refused = medaug("export", runs / "apga-tta", "--format", fmt, "--out", mine, "--overwrite")
    assert refused.returncode == 2 and "medaug did not write it" in refused.stderr and mine.read_bytes() == b"a user's file"


def test_export_mismatch_is_an_error_and_writes_nothing(runs, tmp_path):
    run = tmp_path / "run"
    import shutil

    shutil.copytree(runs / "none", run)
    saved = dict(np.load(run / "predictions.npz"))
    saved["probs"] = saved["probs"] + 1e-3  # predictions the model does not make
    np.savez(run / "predictions.npz", **saved)
    with pytest.raises(MedaugError, match=r"does not reproduce the run's predictions.npz \(max \|diff\| 0.001 > 1e-05"):
        export_run(run, "torchscript", tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists() and not list(tmp_path.glob(".m.pt*")) and not (tmp_path / "m.pt.model_card.md").exists()


def test_export_of_a_rule_it_cannot_trace_is_the_plain_classifier_and_says_so(runs, tmp_path):
    r = export_run(runs / "pgnm-noise", "torchscript", tmp_path / "p.pt")
    assert not r.rule_exported and r.compared == "the plain classifier's probabilities in PyTorch" and r.max_diff <= ATOL
    assert "the export is the plain classifier" in r.notes[0] and "val_noise=global" in r.notes[0]
    card = (tmp_path / "p.pt.model_card.md").read_text()
    assert "the plain classifier (softmax of the logits); the run's test-time rule (val_noise=global" in card


def test_onnx_without_its_packages_is_one_line_naming_the_pip_command(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MedaugError, match=r"--format onnx needs the onnx and onnxruntime packages: pip install 'medaug\[onnx\]'"):
        export_run(runs / "none", "onnx", tmp_path / "m.onnx")
    with pytest.raises(MedaugError, match="choose torchscript or onnx"):
        export_run(runs / "none", "tflite", tmp_path / "m.tflite")


def test_every_run_has_a_model_card(runs):
    card = (runs / "busi-none" / "model_card.md").read_text()
    for needle in ("**Intended use: research only.**", "not a medical device", "Trained on ", "images at 24 px",
                   "2 classes: `benign`, `malignant`", "| metric | test split (n=", "| accuracy |", "## Limits",
                   "data fingerprint", "[train]", "test-time rule: none"):
        assert needle in card, needle
    n_train = load_run(runs / "busi-none").metrics["n_train"]
    assert f"Trained on {n_train} images at 24 px" in card
    assert (runs / "pgnm-staged" / "model_card.md").is_file() and not (runs / "pgnm-staged" / "heated" / "model_card.md").exists()
    assert "then 1 epochs fine-tuning without it" in (runs / "pgnm-staged" / "model_card.md").read_text()
    assert "test-time rule: tta: the mean of the softmax" in (runs / "apga-tta" / "model_card.md").read_text()
    assert "mask_iou (test masks" in (runs / "apga-tta" / "model_card.md").read_text()
