"""``medaug apga-mura``: the original APGA repository's command line, mapped onto medaug.

    python apga_mura.py --seed 88 --body-part elbow --n-runs 1 --gpu-id 0 \\
        --train-cutout 1 --train-apga 1 --train-gradcam 1 --train-end2end 1 [--n-shot 100]
becomes
    medaug apga-mura --data /path/to/MURA-v1.1 --seed 88 --body-part elbow --n-runs 1 --gpu-id 0 \\
        --train-cutout 1 --train-apga 1 --train-gradcam 1 --train-end2end 1 [--n-shot 100]

It builds one experiment plan with the paper's setup (DenseNet-169, 224 px, batch 25, Adam 1e-4,
the ``none`` baseline trained first and the other methods started from its best checkpoint).
Unlike the original code, model selection uses a patient-disjoint validation split carved from
``train`` and MURA's public ``valid`` split is only the test set.
"""

from __future__ import annotations

from typing import Annotated

from .config import PosInt, Range, TrainConfig, check_range
from .experiments import ExperimentConfig, Plan, make_plan

PROTOCOLS = {
    # the paper: Adam 1e-4 for both networks throughout
    "paper": dict(epochs=100, patience=15, lr=1e-4, finetune_lr=1e-4, apga_preset="paper"),
    # the authors' code: baseline 100 epochs (patience 15), then fine-tuning at 1e-5
    "code": dict(epochs=100, patience=15, lr=1e-4, finetune_lr=1e-5, apga_preset="code"),
}


def plan_from_flags(data: str, seed: int, body_part: str, n_runs: int, gpu_id: int | None, cutout: bool, apga: bool,
                    gradcam: bool, end2end: bool, n_shot: int, protocol: str = "paper", out: str = "runs",
                    model: str = "densenet169", size: int = 224, pretrained: str = "", policy_weights: str = "",
                    epochs: int | None = None) -> Plan:
    p = PROTOCOLS[protocol]
    check_range("--n-runs", n_runs, PosInt)
    check_range("--n-shot", n_shot, Annotated[int, Range(ge=0, also=(-1,))])
    methods = ["none"] + [m for m, on in (("cutout", cutout), ("apga", apga), ("gradcam", gradcam), ("end2end", end2end)) if on]
    exp = ExperimentConfig(name=f"apga-mura-{protocol}", out=out, data=[data], methods=methods,
                           seeds=list(range(seed, seed + n_runs)), shots=[max(n_shot, 0)])
    train = TrainConfig(
        body_part=body_part, model=model, size=size, pretrained=pretrained,
        batch_size=25, optimizer="adam", lr=p["lr"], finetune_lr=p["finetune_lr"], epochs=p["epochs"] if epochs is None else epochs,
        patience=p["patience"], schedule="none", monitor="accuracy", budget="paper",  # the baseline trained to convergence first
        device="cpu" if gpu_id is None or gpu_id < 0 else f"cuda:{gpu_id}",
    )
    policy = dict(policy="ternaus", policy_width=64, policy_lr=1e-4, policy_weights=policy_weights)
    options = {"apga": dict(preset=p["apga_preset"], **policy), "end2end": dict(policy)}
    return make_plan(exp, train, {k: v for k, v in options.items() if k in methods})
