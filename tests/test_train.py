"""The training loop: end to end, exact resume after a kill, finished runs skipped, NaN loss."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from medaug.config import TrainConfig
from medaug.errors import MedaugError
from medaug.train import baseline_epochs, fit


def test_fit_writes_every_result_file(tiny_cfg, tmp_path):
    result = fit(tiny_cfg(method="none"), tmp_path / "run")
    for name in ("config.toml", "checkpoint.pt", "best.pt", "log.jsonl", "metrics.json", "predictions.npz"):
        assert (tmp_path / "run" / name).is_file(), name
    assert 0.0 <= result["test"]["accuracy"] <= 1.0
    assert result["epochs_run"] == 2
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 2
    # checkpoints load without unpickling arbitrary objects
    torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=True)["num_classes"] == 2  # stored with the weights


def test_finished_run_is_skipped(tiny_cfg, tmp_path):
    first = fit(tiny_cfg(), tmp_path / "run")
    stamp = (tmp_path / "run" / "metrics.json").stat().st_mtime_ns
    again = fit(tiny_cfg(), tmp_path / "run")
    assert again == first
    assert (tmp_path / "run" / "metrics.json").stat().st_mtime_ns == stamp


def test_same_seed_same_metrics(tiny_cfg, tmp_path):
    a = fit(tiny_cfg(method="cutout"), tmp_path / "a")
    b = fit(tiny_cfg(method="cutout"), tmp_path / "b")
    assert a["test"] == b["test"]


def test_resume_from_checkpoint_matches_uninterrupted(tiny_cfg, tmp_path, monkeypatch):
    """Crash right after epoch 2's checkpoint (of 4), run again, compare with a straight run."""
    import medaug.train as train_mod

    straight = fit(tiny_cfg(method="classical", epochs=4), tmp_path / "straight")
    real_write, calls = train_mod.write_text, []

    def crash_after_two_epochs(path, text):
        real_write(path, text)
        if path.name == "log.jsonl":
            calls.append(path)
            if len(calls) == 2:
                raise RuntimeError("simulated crash")

    monkeypatch.setattr(train_mod, "write_text", crash_after_two_epochs)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tiny_cfg(method="classical", epochs=4), tmp_path / "resumed")
    monkeypatch.setattr(train_mod, "write_text", real_write)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    resumed = fit(tiny_cfg(method="classical", epochs=4), tmp_path / "resumed")
    assert resumed["test"] == straight["test"]
    assert resumed["best_epoch"] == straight["best_epoch"]


def test_kill_9_then_rerun_gives_same_metrics(tiny_data, tmp_path):
    """The real thing: SIGKILL a `medaug train` process mid-run, run the same command again."""
    env = {**os.environ, "MEDAUG_CACHE": str(tmp_path / "cache")}
    args = [sys.executable, "-m", "medaug", "train", "--data", str(tiny_data), "--size", "32", "--epochs", "6",
            "--method", "cutout", "--batch-size", "16"]
    straight = subprocess.run(args + ["--out", str(tmp_path / "straight")], env=env, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    proc = subprocess.Popen(args + ["--out", str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "killed" / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and len(log.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists(), "killed before finishing"
    again = subprocess.run(args + ["--out", str(tmp_path / "killed")], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert a["test"] == b["test"]


def test_nan_loss_is_a_clear_error(tiny_cfg, tmp_path):
    # A step size near float32's limit (inf itself is refused by lr's range) turns the weights into inf/NaN
    # after the first update, so the epoch's mean loss is non-finite.
    with pytest.raises(MedaugError, match="NaN"):
        fit(tiny_cfg(lr=1e38, optimizer="sgd", epochs=3), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_two_stage_method_needs_a_baseline(tiny_cfg, tmp_path):
    with pytest.raises(MedaugError, match="--baseline"):
        fit(tiny_cfg(method="apga"), tmp_path / "run")


@pytest.mark.parametrize("step", ["sequential", "fused"])
def test_torchrun_two_processes_write_one_result(tiny_data, tmp_path, step):
    """DistributedDataParallel on CPU (gloo): two processes share the batches, one writes the result
    (APGA's pass-by-pass step, and the fused one whose L_adv pass borrows BatchNorm statistics)."""
    env = {**os.environ, "MEDAUG_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ddp"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "medaug", "train", "--data", str(tiny_data), "--size", "32", "--epochs", "4",
            "--method", "apga", "--baseline", str(tmp_path / "base"), "--batch-size", "8", "--device", "cpu",
            "-o", "policy_size=32", "-o", "policy_width=4", "-o", f"step={step}", "--out", str(out)]
    base = [sys.executable, "-m", "medaug", "train", "--data", str(tiny_data), "--size", "32", "--epochs", "4",
            "--batch-size", "16", "--out", str(tmp_path / "base")]
    assert subprocess.run(base, env=env, capture_output=True, text=True).returncode == 0
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, "\n".join(line for line in done.stderr.splitlines() if "error" in line.lower())[-3000:]
    result = json.loads((out / "metrics.json").read_text())
    assert result["world_size"] == 2
    method_epochs = 4 - baseline_epochs(TrainConfig(method="apga", epochs=4))  # after the branch point
    assert len((out / "log.jsonl").read_text().splitlines()) == method_epochs
    assert 0.0 <= result["test"]["accuracy"] <= 1.0


def test_channels_last_trains_the_same_model(tiny_cfg, tmp_path):
    """NHWC weights change the memory layout, not the maths: same seed, metrics equal to round-off."""
    import torch

    from medaug.device import place
    from medaug.models.classifiers import create_classifier

    assert place(create_classifier("tiny"), torch.device("cpu"), True).features[0][0].weight.is_contiguous(
        memory_format=torch.channels_last)
    a = fit(tiny_cfg(epochs=2), tmp_path / "nchw")
    b = fit(tiny_cfg(epochs=2, channels_last=True), tmp_path / "nhwc")
    assert b["test"]["auroc"] == pytest.approx(a["test"]["auroc"], abs=0.02)
    assert b["test"]["loss"] == pytest.approx(a["test"]["loss"], abs=1e-3)
    assert b == fit(tiny_cfg(epochs=2, channels_last=True), tmp_path / "nhwc")  # finished: read back, same
    again = fit(tiny_cfg(epochs=2, channels_last=True), tmp_path / "nhwc2")
    assert again["test"] == b["test"]  # deterministic on CPU


def test_collapsed_policy_is_flagged_in_console_metrics_and_report(tiny_cfg, tmp_path, capsys):
    """A policy forced to P ~ 0 (nothing kept) for 3 epochs: one console line, metrics.json's
    'collapse', and the report marks the cell; a method without learned masks is never flagged."""
    from medaug.report import write_report

    root = tmp_path / "runs" / "synth"
    base = fit(tiny_cfg(epochs=3), root / "none" / "shot-all" / "seed-0")
    assert "collapse" not in base
    opts = {"preset": "paper", "policy_width": 4, "init_useful": 1e-4}
    result = fit(tiny_cfg(method="apga", method_options=opts, epochs=3, baseline=str(root / "none" / "shot-all" / "seed-0"),
                          budget="paper"),  # 3 epochs of apga after the whole none run
                 root / "apga" / "shot-all" / "seed-0")
    assert result["collapse"]["epoch"] == 3 and result["collapse"]["kind"] == "empty"
    assert result["collapse"]["kept_fraction"] < 0.01
    lines = [line for line in capsys.readouterr().err.splitlines() if "mask collapse" in line]
    assert len(lines) == 1 and "epoch 3" in lines[0]
    import pandas as pd

    out = write_report(tmp_path / "runs")
    assert "COLLAPSED 1/1" in (out / "report.md").read_text()
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary[summary.method == "apga"]["collapsed"]) == {1} and set(summary[summary.method == "none"]["collapsed"]) == {0}


def test_equal_budget_two_stage_runs_continue_the_none_run_at_its_branch_epoch(tiny_cfg, tmp_path):
    """budget equal: `none` saves branch.pt (its best checkpoint of the first baseline_epochs epochs); a
    two-stage method starts there and trains the rest of the same budget; a baseline of another budget is
    refused; budget paper adds `epochs` to the baseline's final best.pt."""
    base = fit(tiny_cfg(epochs=4), tmp_path / "none")
    branch = torch.load(tmp_path / "none" / "branch.pt", weights_only=True)
    assert (branch["branch_epoch"], branch["epochs"]) == (3, 4) and branch["epoch"] <= 2  # best of epochs 1-3 (4/5 of 4, rounded up, at most 3)
    assert base["budget"] == {"mode": "equal", "classifier_epochs": 4}
    opts = {"policy_width": 4, "prior_steps": 2}
    apga = fit(tiny_cfg(method="apga", epochs=4, baseline=str(tmp_path / "none"), method_options=opts), tmp_path / "apga")
    assert apga["epochs_run"] == 1 and apga["stages"] == {"baseline_epochs": 3, "method_epochs": 1}
    assert apga["budget"] == {"mode": "equal", "classifier_epochs": 4}
    with pytest.raises(MedaugError, match="first stage ends at epoch 3 of 4; this run needs epoch 5 of 6"):
        fit(tiny_cfg(method="apga", epochs=6, baseline=str(tmp_path / "none"), method_options=opts), tmp_path / "apga6")
    paper = fit(tiny_cfg(method="apga", epochs=4, baseline=str(tmp_path / "none"), method_options=opts, budget="paper"),
                tmp_path / "apga-paper")
    assert paper["epochs_run"] == 4 and paper["budget"] == {"mode": "paper", "classifier_epochs": 8}
    with pytest.raises(MedaugError, match="leaving none for apga's own stage"):
        fit(tiny_cfg(method="apga", epochs=2, baseline_epochs=2, baseline=str(tmp_path / "none")), tmp_path / "apga-0")


def test_two_stage_run_keeps_its_start_when_no_epoch_beats_it(tiny_cfg, tmp_path, capsys, monkeypatch):
    """Do no harm: the starting checkpoint is scored as epoch 0; when every epoch of the method is worse on
    validation, the run keeps the baseline (plain predictions) and says so on the console and in metrics.json."""
    import medaug.train as train_mod

    fit(tiny_cfg(epochs=4), tmp_path / "none")
    real = train_mod.evaluate

    def worse_with_the_method(method, ctx, split, studies=True):
        metrics, probs = real(method, ctx, split, studies)
        if method is not train_mod.PLAIN:
            metrics = {**metrics, "auroc": metrics["auroc"] - 1.0}  # every epoch of gradcam loses to the start
        return metrics, probs

    monkeypatch.setattr(train_mod, "evaluate", worse_with_the_method)
    result = fit(tiny_cfg(method="gradcam", epochs=4, baseline=str(tmp_path / "none")), tmp_path / "gradcam")
    assert result["start"]["kept"] is True and result["best_epoch"] == 0 and result["epochs_run"] == 1  # 3 of 4 epochs in the none stage
    assert result["valid"]["auroc"] == pytest.approx(result["start"]["valid"]["auroc"])  # the kept baseline, plain rule
    assert torch.load(tmp_path / "gradcam" / "best.pt", weights_only=True)["start"] is True
    assert "kept the starting checkpoint (epoch 0, the `none` baseline)" in capsys.readouterr().err.replace("\n", "")
    monkeypatch.setattr(train_mod, "evaluate", real)
    normal = fit(tiny_cfg(method="gradcam", epochs=4, baseline=str(tmp_path / "none")), tmp_path / "gradcam2")
    assert set(normal["start"]) == {"kept", "valid", "from"} and "auroc" in normal["start"]["valid"]
    assert normal["start"]["from"] == "none"  # the run it started from (classical for apga+classical)
    assert "start" not in fit(tiny_cfg(method="cutout", epochs=2), tmp_path / "cutout")  # one-stage methods unchanged


def test_two_stage_run_warns_when_it_beats_its_start_at_a_worse_operating_point(tiny_cfg, tmp_path, capsys, monkeypatch):
    """An epoch that beats the start on the selection metric (AUROC) but loses validation balanced accuracy
    replaces the start, and the run warns (what AUROC alone hides: the knee all-images apga seed 0)."""
    import medaug.train as train_mod
    from medaug.results import start_valid_drop

    fit(tiny_cfg(epochs=4), tmp_path / "none")
    real = train_mod.evaluate

    def better_auroc_worse_threshold(method, ctx, split, studies=True):
        metrics, probs = real(method, ctx, split, studies)
        if method is not train_mod.PLAIN:
            metrics = {**metrics, "auroc": metrics["auroc"] + 1.0, "balanced_accuracy": -1.0}  # drop >= 1
        return metrics, probs

    monkeypatch.setattr(train_mod, "evaluate", better_auroc_worse_threshold)
    result = fit(tiny_cfg(method="gradcam", epochs=4, baseline=str(tmp_path / "none")), tmp_path / "gradcam")
    assert result["start"]["kept"] is False and result["best_epoch"] >= 1
    assert start_valid_drop(result) >= 1.0
    err = capsys.readouterr().err.replace("\n", "")
    assert "warning: the chosen epoch beat its start in validation auroc but its validation balanced accuracy is" in err


def test_a_tied_score_is_broken_by_the_validation_loss():
    """Selection on a saturated metric (validation AUROC 1.0 from epoch 1 on an easy task): the same score with a
    lower validation loss wins; a higher score always wins; a checkpoint's state without best_loss still works."""
    from medaug.train import improves

    state = {"best_score": 1.0, "best_loss": 0.6}
    assert improves(1.0, 0.1, state) and not improves(1.0, 0.7, state) and not improves(0.99, 0.01, state)
    assert improves(1.01, 5.0, state) and improves(1.0, 0.1, {"best_score": 1.0})
