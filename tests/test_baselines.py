"""The baselines users pick instead: randaugment, trivialaugment (kornia, gray), mixup and cutmix (soft labels)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medaug.errors import MedaugError
from medaug.methods import METHODS, create_method
from medaug.methods.autoaugment import RA_POLICY, TA_POLICY, gray_policy
from medaug.methods.base import concat_step
from medaug.methods.mix import cutmix_boxes, mix_targets
from medaug.train import fit

from test_methods import make_ctx

NEW = ["randaugment", "trivialaugment", "mixup", "cutmix"]


def test_registered_with_options():
    assert set(NEW) <= set(METHODS.names())
    with pytest.raises(MedaugError, match="n must be"):
        create_method("randaugment", {"n": 0})
    with pytest.raises(MedaugError, match="m must be"):
        create_method("randaugment", {"m": 30})
    with pytest.raises(MedaugError, match="ops invert2 not in"):
        create_method("trivialaugment", {"ops": "rotate,invert2"})
    with pytest.raises(MedaugError, match="alpha must be"):
        create_method("mixup", {"alpha": 0.0})
    method = create_method("randaugment", {"ops": "color,rotate"})  # a colour op: 3 channels only, so refused on gray data
    with pytest.raises(MedaugError, match="not in randaugment's gray policy"):
        method.setup(make_ctx(size=28))


@pytest.mark.parametrize("policy", [RA_POLICY, TA_POLICY], ids=["randaugment", "trivialaugment"])
def test_every_gray_op_runs_on_one_channel_in_range(policy):
    from kornia.augmentation.auto import RandAugment

    torch.manual_seed(0)
    x = torch.rand(16, 1, 28, 28)
    ops = gray_policy(policy, "", "x")
    assert "color" not in {p[0][0] for p in ops} and len(ops) >= 12
    rgb = x.expand(-1, 3, -1, -1).contiguous()
    for sub in ops:
        for m in (5, 25):
            aug = RandAugment(n=1, m=m, policy=[sub])
            torch.manual_seed(m)
            y = aug(x)
            assert y.shape == x.shape and torch.isfinite(y).all(), sub
            assert y.min() >= -1e-6 and y.max() <= 1 + 1e-6, sub
            torch.manual_seed(m)  # the same draws on the gray image repeated to RGB: the same result per channel
            assert torch.allclose(aug(rgb), y.expand(-1, 3, -1, -1), atol=1e-5), sub


@pytest.mark.parametrize("name", ["randaugment", "trivialaugment"])
def test_policy_methods_augment_gray_batches(name):
    ctx = make_ctx(size=28)
    method = create_method(name, {"groups": 4})
    method.setup(ctx)
    torch.manual_seed(1)
    x = torch.rand(12, 1, 28, 28)
    changed = sum(not torch.allclose(method.apply(x), x) for _ in range(5))
    out = method.apply(x)
    assert out.shape == (12, 1, 28, 28) and out.min() >= 0 and out.max() <= 1
    assert changed >= 3  # some draws (e.g. brightness at factor 1) may leave a chunk alone, not all


@pytest.mark.parametrize("name", NEW)
def test_each_method_trains_a_step_on_gray_input(name):
    ctx = make_ctx(size=28)
    method = create_method(name)
    method.setup(ctx)
    before = [p.detach().clone() for p in ctx.model.parameters()]
    torch.manual_seed(0)
    logs = method.train_step(ctx, torch.rand(8, 1, 28, 28), torch.tensor([0, 1] * 4))
    assert set(logs) == {"loss"} and torch.isfinite(logs["loss"]) and logs["loss"].shape == ()
    assert any(not torch.equal(a, b) for a, b in zip(before, ctx.model.parameters()))


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
@pytest.mark.parametrize("per_image", [False, True])
def test_mixed_images_and_targets(name, per_image):
    torch.manual_seed(0)
    x = torch.rand(16, 1, 20, 20)
    y = torch.randint(0, 3, (16,))
    method = create_method(name, {"per_image": per_image, "alpha": 1.0})
    torch.manual_seed(5)
    x_mix, t = method.mix(x, y, 3)
    torch.manual_seed(5)  # replay the draws: the permutation comes first
    perm = torch.randperm(16)
    assert x_mix.shape == x.shape and t.shape == (16, 3)
    assert torch.allclose(t.sum(1), torch.ones(16))
    same = y == y[perm]
    assert torch.allclose(t[same].max(1).values, torch.ones(int(same.sum())))  # a pair of one class: a hard label
    lam_diff = t[~same].gather(1, y[~same].view(-1, 1)).squeeze(1)
    if name == "mixup":  # x_mix = lam x + (1 - lam) x[perm], with the lam of the target
        w = lam_diff.view(-1, 1, 1, 1)
        assert torch.allclose(x_mix[~same], w * x[~same] + (1 - w) * x[perm][~same], atol=1e-6)
    else:  # each pixel is from x or x[perm]; lam = the fraction from x
        from_x = (x_mix == x).float().mean((1, 2, 3))
        assert torch.allclose(from_x[~same], lam_diff, atol=1e-6)
        assert bool(((x_mix == x) | (x_mix == x[perm])).all())
    spread = lam_diff.unique().numel()
    assert (spread > 1) if per_image else (spread == 1)


def test_soft_target_loss_is_the_lambda_weighted_cross_entropy():
    ctx = make_ctx(size=28)
    torch.manual_seed(0)
    x, y = torch.rand(8, 1, 28, 28), torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    perm = torch.randperm(8)
    lam = torch.rand(8)
    x_mix = x.flip(0)
    t = mix_targets(y, perm, lam, 2)
    ctx.model.eval()  # the same logits in the step and in the reference (no dropout, fixed BatchNorm)
    with torch.no_grad():
        logits = ctx.logits(torch.cat([x, x_mix]))
    ce_orig = F.cross_entropy(logits[:8], y, reduction="none")
    ce_mix = lam * F.cross_entropy(logits[8:], y, reduction="none") + (1 - lam) * F.cross_entropy(logits[8:], y[perm], reduction="none")
    expected = torch.cat([ce_orig, ce_mix]).mean()  # 1:1: the mean over originals and mixed copies
    loss = concat_step(ctx, x, y, x_mix, t)["loss"]
    assert torch.allclose(loss, expected, atol=1e-6)


def test_cutmix_boxes_cover_one_minus_lambda_before_clipping():
    torch.manual_seed(0)
    lam = torch.full((2000,), 0.75)
    keep = cutmix_boxes(lam, 40, 40)
    erased = 1 - keep.mean((1, 2, 3))
    assert keep.shape == (2000, 1, 40, 40)
    assert erased.max() <= 0.25 + 1e-6 and erased.max() > 0.24  # 20 x 20 boxes, clipped near the borders


@pytest.mark.parametrize("name", NEW)
def test_each_method_runs_end_to_end(tiny_cfg, tmp_path, name):
    result = fit(tiny_cfg(method=name, epochs=1), tmp_path / name)
    assert result["method"] == name and 0 <= result["test"]["auroc"] <= 1
