"""PGNM: Beta noise masks, REINFORCE, the heated model + fine-tuning stage, weight averaging, transfer."""

from __future__ import annotations

import tomllib

import pytest
import torch

from medaug.config import TrainConfig
from medaug.errors import MedaugError
from medaug.experiments import ExperimentConfig, make_plan, run_config
from medaug.methods.pgnm import PGNM, mask_geometry, reinforce_loss
from medaug.models.classifiers import create_classifier
from medaug.context import Context
from medaug.train import average_weights, finetune_epochs, fit


def make_ctx(size: int = 64, classes: int = 3) -> Context:
    torch.manual_seed(0)
    net = create_classifier("tiny", 1, classes)
    cfg = TrainConfig(data="x", size=size, epochs=4)
    return Context(net, torch.optim.Adam(net.parameters(), 1e-3), torch.device("cpu"), cfg, classes,
                   torch.amp.GradScaler("cpu", enabled=False))


@pytest.fixture(scope="module")
def multiclass_data(tmp_path_factory):
    """normal + fracture + lesion + hardware, folders layout, 32 px."""
    from medaug.data.synth import generate

    root = tmp_path_factory.mktemp("mc") / "synth4"
    generate(root, n_train=64, n_test=32, size=32, seed=3, classes=4, layout="folders", progress=False)
    return root


def test_beta_parameters_and_masks_are_valid():
    ctx = make_ctx()
    m = PGNM()
    m.setup(ctx)
    x, y = torch.rand(5, 1, 64, 64), torch.randint(0, 3, (5,))
    blended, own = m.log_params(ctx, x)
    assert blended.shape == (5, 2, m.grid, m.grid) == own.shape
    dist = m.beta(blended)
    for p in (dist.concentration1, dist.concentration0):
        assert torch.isfinite(p).all() and (p > 0).all()
    mask = dist.sample()
    noised = m.noise_image(x, mask)
    assert noised.shape == x.shape and noised.min() >= 0 and noised.max() <= 1
    soft = m.saliency(ctx, x)
    assert soft.shape == x.shape and soft.min() >= 0 and soft.max() <= 1 + 1e-6
    before = [p.clone() for p in m.policy.parameters()]
    g_before = m.global_log.clone()
    logs = m.train_step(ctx, x, y)
    assert all(torch.isfinite(v) for v in logs.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, m.policy.parameters()))
    assert not torch.equal(g_before, m.global_log)  # the global parameters follow the EMA


def test_mask_geometry_scales_the_authors_224px_values():
    assert mask_geometry(64, 13, 6.0, 224, True) == (64, 13, 6.0)
    grid, kernel, sigma = mask_geometry(64, 13, 6.0, 64, True)
    assert (grid, kernel) == (18, 5) and sigma == pytest.approx(6 * 64 / 224)
    assert mask_geometry(64, 13, 6.0, 32, False) == (32, 13, 6.0)  # grid capped at the image


def test_reinforce_gradient_favours_the_cheaper_action():
    log_prob = torch.zeros(2, requires_grad=True)
    reinforce_loss(log_prob, torch.tensor([0.2, 1.0]), baseline=0.6).backward()
    # gradient descent raises log pi of the action whose cost is below the baseline, lowers the other
    assert log_prob.grad[0] < 0 < log_prob.grad[1]


def test_reinforce_learns_a_mask_that_lowers_the_loss():
    """Toy problem: the cost is the distance of the mask to 0.9; the Beta's mean must move there."""
    torch.manual_seed(0)
    theta = torch.zeros(2, 4, 4, requires_grad=True)  # log alpha, log beta per cell: Beta(1, 1), mean 0.5
    opt = torch.optim.Adam([theta], lr=0.05)
    baseline = None
    for _ in range(300):
        dist = torch.distributions.Beta(theta[0].exp().expand(16, 4, 4), theta[1].exp().expand(16, 4, 4))
        m = dist.sample().clamp(1e-4, 1 - 1e-4)
        cost = ((m - 0.9) ** 2).flatten(1).mean(1)
        baseline = cost.mean() if baseline is None else 0.9 * baseline + 0.1 * cost.mean()
        loss = reinforce_loss(dist.log_prob(m).flatten(1).mean(1), cost, baseline)
        opt.zero_grad()
        loss.backward()
        opt.step()
    a, b = theta.detach().exp()
    assert (a / (a + b)).mean() > 0.75


def test_code_objective_trains_both_networks():
    ctx = make_ctx()
    m = PGNM(objective="code")
    m.setup(ctx)
    before_policy = [p.clone() for p in m.policy.parameters()]
    before_model = [p.clone() for p in ctx.model.parameters()]
    logs = m.train_step(ctx, torch.rand(4, 1, 64, 64), torch.randint(0, 3, (4,)))
    assert torch.isfinite(logs["policy_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before_policy, m.policy.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_model, ctx.model.parameters()))


def test_bad_options_are_clear_errors():
    with pytest.raises(MedaugError, match="objective"):
        PGNM(objective="nope")
    with pytest.raises(MedaugError, match="kernel"):
        PGNM(kernel=4)


def test_average_weights_is_the_mean():
    states = [{"w": torch.full((2,), float(i)), "n": torch.tensor(i)} for i in range(3)]
    avg = average_weights(states)
    assert torch.equal(avg["w"], torch.full((2,), 1.0)) and int(avg["n"]) == 2


def test_heated_then_finetuned_end_to_end(multiclass_data, tmp_path):
    cfg = TrainConfig(data=str(multiclass_data), size=32, epochs=5, batch_size=16, method="pgnm",
                      finetune_epochs=3, average_last=2, progress=False)
    out = tmp_path / "run"
    result = fit(cfg, out)
    assert result["method"] == "pgnm" and result["stages"]["finetune_epochs"] == 3
    # budget equal: the heated stage and the fine-tuning share the 5 epochs
    assert result["stages"]["heated_epochs"] == 2 and result["budget"] == {"mode": "equal", "classifier_epochs": 5}
    assert result["epochs_run"] == 3 and result["heated"]["best_epoch"] >= 1
    for key in ("macro_precision", "macro_recall", "macro_f1", "balanced_accuracy", "auroc_ovo", "auroc"):
        assert 0 <= result["test"][key] <= 1
    # stage 1 is a complete run with the policy; stage 2 holds no policy weights
    heated = torch.load(out / "heated" / "best.pt", weights_only=True)
    assert "policy" in heated["method"]
    for name in ("best.pt", "checkpoint.pt"):
        ckpt = torch.load(out / name, weights_only=True)
        assert ckpt["method"] == {}
        assert not any("policy" in k for k in ckpt["model"])
    # the selected model is the mean of the last two epochs' saved weights
    last = sorted((out / "last").glob("epoch-*.pt"))
    assert [p.name for p in last] == ["epoch-0002.pt", "epoch-0003.pt"]
    saved = [torch.load(p, weights_only=True)["model"] for p in last]
    best = torch.load(out / "best.pt", weights_only=True)["model"]
    for key, value in best.items():
        if value.is_floating_point():
            assert torch.allclose(value, (saved[0][key] + saved[1][key]) / 2)
    assert tomllib.loads((out / "config.toml").read_text())["train"]["method"] == "pgnm"
    assert (out / "heated" / "mask_history.png").is_file()
    import numpy as np

    hist = np.load(out / "heated" / "mask_history.npz")["masks"]
    assert hist.dtype == np.float16 and hist.shape[0] == 2 and 0 <= hist.min() and hist.max() <= 1
    assert fit(cfg, out) == result  # finished: returned as is


def test_budget_paper_plans_give_none_the_same_finetuning_stage(tmp_path):
    exp = ExperimentConfig(data=[str(tmp_path)], methods=["none", "pgnm", "apga"])
    plan = make_plan(exp, TrainConfig(budget="paper"))
    assert run_config(plan, str(tmp_path), "none", 0, 0).finetune_epochs == 10
    assert run_config(plan, str(tmp_path), "pgnm", 0, 0).finetune_epochs == 10
    assert run_config(plan, str(tmp_path), "apga", 0, 0).finetune_epochs == -1  # starts from none instead
    plain = make_plan(ExperimentConfig(data=[str(tmp_path)], methods=["none", "cutout"]), TrainConfig(budget="paper"))
    assert finetune_epochs(run_config(plain, str(tmp_path), "none", 0, 0)) == 0
    # budget equal (the default): pgnm's stages fit in epochs, so the one-stage methods get no extra stage
    equal = make_plan(exp, TrainConfig(epochs=25))
    assert finetune_epochs(run_config(equal, str(tmp_path), "none", 0, 0)) == 0
    assert finetune_epochs(run_config(equal, str(tmp_path), "pgnm", 0, 0)) == 17  # 2/3 of the 25 epochs


def test_pgnm_stages_default_to_a_share_of_an_equal_budget_and_older_runs_are_not_reused(tmp_path):
    """budget equal, finetune_epochs -1: pgnm fine-tunes 2/3 of the epochs at the run's lr (chosen on two datasets'
    validation splits); set explicitly or under budget paper: the papers' stage (10 epochs, lr / 10). A finished run
    whose recorded stages differ from today's (trained before a default changed) is refused, naming both."""
    from medaug.errors import MedaugError
    from medaug.train import check_stages, stage_plan

    assert stage_plan(TrainConfig(method="pgnm", epochs=30)) == {"heated_epochs": 10, "finetune_epochs": 20, "finetune_lr": 1e-3}
    assert stage_plan(TrainConfig(method="pgnm", epochs=30, finetune_epochs=10)) == {
        "heated_epochs": 20, "finetune_epochs": 10, "finetune_lr": 1e-4}
    assert stage_plan(TrainConfig(method="pgnm", epochs=20, budget="paper"))["finetune_epochs"] == 10
    assert stage_plan(TrainConfig(method="apga", epochs=30, baseline="x")) == {"baseline_epochs": 24, "method_epochs": 6}
    assert stage_plan(TrainConfig(method="cutout", epochs=30)) == {}
    old = {"stages": {"heated_epochs": 20, "finetune_epochs": 10, "finetune_lr": 1e-4}}
    with pytest.raises(MedaugError, match="heated_epochs 20 there, 10 now; finetune_epochs 10 there, 20 now"):
        check_stages(tmp_path, old, TrainConfig(method="pgnm", epochs=30))
    check_stages(tmp_path, old, TrainConfig(method="pgnm", epochs=30, finetune_epochs=10))  # the same stages: reused
    with pytest.raises(MedaugError, match="baseline_epochs 15 there, 24 now"):
        check_stages(tmp_path, {"stages": {"baseline_epochs": 15, "method_epochs": 15}},
                     TrainConfig(method="apga", epochs=30, baseline="x"))


def test_transfer_to_unseen_findings(multiclass_data, tmp_path):
    from medaug.data.synth import generate
    from medaug.transfer import parse_backbones, run_transfer

    base = dict(data=str(multiclass_data), size=32, epochs=1, batch_size=16, progress=False)
    fit(TrainConfig(method="pgnm", finetune_epochs=1, average_last=1, **{**base, "epochs": 2}), tmp_path / "pgnm")
    fit(TrainConfig(method="none", **base), tmp_path / "none")
    new = generate(tmp_path / "new", n_train=24, n_test=12, size=32, seed=9, findings="sclerosis,periosteal",
                   layout="folders", progress=False)
    backbones = parse_backbones([str(tmp_path / "pgnm"), f"plain={tmp_path / 'none'}"])
    assert list(backbones) == ["pgnm", "plain"]
    df = run_transfer(backbones, str(new), [2], [0, 1], tmp_path / "tr", ["finetune", "linear"], epochs=1,
                      batch_size=8, progress=False)
    assert len(df) == 8 and set(df["mode"]) == {"finetune", "linear"}
    assert df["macro_f1"].between(0, 1).all()
    assert "| linear | 2 | plain |" in (tmp_path / "tr" / "transfer.md").read_text()
    assert (tmp_path / "tr" / "transfer.png").stat().st_size > 0
    # a linear probe changes only the new head
    src = torch.load(tmp_path / "none" / "best.pt", weights_only=True)["model"]
    probe = torch.load(tmp_path / "tr" / "plain" / "linear" / "shot-2" / "seed-0" / "best.pt", weights_only=True)["model"]
    assert probe["head.3.weight"].shape[0] == 3
    assert all(torch.equal(src[k], probe[k]) for k in src if not k.startswith("head."))
    with pytest.raises(MedaugError, match="not a trained run folder"):
        parse_backbones([str(tmp_path / "missing")])


def test_synth_findings_option(tmp_path):
    from medaug.data.synth import generate

    root = generate(tmp_path / "f", n_train=12, n_test=6, size=32, findings="periosteal,lesion", layout="folders",
                    progress=False)
    assert sorted(p.name for p in (root / "train").iterdir()) == ["lesion", "normal", "periosteal"]
    with pytest.raises(MedaugError, match="--findings"):
        generate(tmp_path / "g", findings="fracture,nope", layout="folders", progress=False)
    with pytest.raises(MedaugError, match="layout folders"):
        generate(tmp_path / "h", findings="lesion", progress=False)


def test_separable_blur_equals_kornia():
    import kornia

    ctx = make_ctx()
    m = PGNM()
    m.setup(ctx)
    mask = torch.rand(3, 1, 64, 64)
    ref = kornia.filters.gaussian_blur2d(mask, (m.kernel, m.kernel), (m.sigma, m.sigma), border_type="replicate")
    assert torch.allclose(m.blur(mask), ref, atol=1e-6)
