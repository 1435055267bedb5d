"""The original APGA repository's flags, mapped onto a medaug experiment."""

from __future__ import annotations

import subprocess
import sys

from medaug.compat import plan_from_flags


def test_flags_map_to_the_paper_protocol():
    plan = plan_from_flags("data", seed=88, body_part="elbow", n_runs=3, gpu_id=None, cutout=True, apga=True,
                           gradcam=False, end2end=False, n_shot=100)
    exp, train = plan.experiment, plan.train
    assert exp.methods == ["none", "cutout", "apga"] and exp.seeds == [88, 89, 90] and exp.shots == [100]
    assert train.model == "densenet169" and train.size == 224 and train.batch_size == 25 and train.lr == 1e-4
    assert train.body_part == "elbow" and train.device == "cpu" and train.patience == 15
    assert plan.method_options["apga"]["preset"] == "paper" and plan.method_options["apga"]["policy_width"] == 64
    code = plan_from_flags("data", 0, "wrist", 1, 0, False, True, True, True, -1, protocol="code")
    assert code.train.finetune_lr == 1e-5 and code.method_options["apga"]["preset"] == "code"
    assert code.experiment.shots == [0] and code.train.device == "cuda:0"


def test_apga_mura_command_runs_on_a_mura_copy(tiny_data, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "medaug", "apga-mura", "--data", str(tiny_data), "--seed", "88", "--body-part", "elbow",
         "--n-runs", "1", "--gpu-id", "-1", "--train-cutout", "1", "--train-apga", "1", "--epochs", "1",
         "--model", "tiny", "--size", "32", "--out", str(tmp_path)],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted(p.parent.parent.parent.name for p in tmp_path.rglob("metrics.json"))
    assert runs == ["apga", "cutout", "none"]
    assert "apga" in proc.stdout and "report:" in proc.stdout
