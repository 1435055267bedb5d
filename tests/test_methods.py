"""Each method's own mechanics, on tiny tensors (no dataset needed)."""

from __future__ import annotations

import pytest
import torch

from medaug.config import TrainConfig
from medaug.errors import MedaugError
from medaug.methods import METHODS, create_method
from medaug.methods.apga import APGA, policy_loss
from medaug.methods.cutout import Cutout
from medaug.methods.gradcam import grad_cam
from medaug.models.classifiers import create_classifier
from medaug.context import Context


def make_ctx(model: str = "tiny", size: int = 32, **cfg) -> Context:
    torch.manual_seed(0)
    net = create_classifier(model, 1, 2)
    c = TrainConfig(data="x", size=size, model=model, **cfg)
    images = torch.randint(0, 256, (8, size, size), dtype=torch.uint8).numpy()  # for setups that read training images
    return Context(net, torch.optim.Adam(net.parameters(), 1e-3), torch.device("cpu"), c, 2,
                   torch.amp.GradScaler("cpu", enabled=False), extras={"train_images": images})


def test_registry_lists_the_methods():
    assert {"none", "classical", "cutout", "apga", "gradcam", "end2end"} <= set(METHODS.names())
    with pytest.raises(MedaugError, match="unknown method 'nope'"):
        create_method("nope")
    with pytest.raises(MedaugError, match="unknown option"):
        create_method("cutout", {"sise": 3})
    with pytest.raises(MedaugError, match="variant"):
        create_method("cutout", {"variant": "square"})


@pytest.mark.parametrize("variant", ["apga", "devries"])
def test_cutout_masks_are_binary_boxes(variant):
    torch.manual_seed(0)
    m = Cutout(variant=variant).keep_masks(torch.rand(64, 1, 40, 40))
    assert m.shape == (64, 1, 40, 40)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    erased = 1 - m[:, 0]
    # each erased region is one axis-aligned box: rows x cols of its bounding box are all erased
    for e in erased:
        if e.sum() == 0:
            continue
        rows, cols = e.any(1).nonzero(), e.any(0).nonzero()
        box = e[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert bool(box.all())
    if variant == "devries":  # fixed 20x20 square, clipped at borders: never larger
        assert erased.flatten(1).sum(1).max() <= 400
    else:  # random area: spread from tiny to most of the image
        frac = erased.flatten(1).mean(1)
        assert frac.min() < 0.2 and frac.max() > 0.5


def test_classical_augments_on_device_in_range():
    ctx = make_ctx()
    method = create_method("classical")
    method.setup(ctx)
    x = torch.rand(8, 1, 32, 32)
    out = method.apply(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x)


@pytest.mark.parametrize("action", ["threshold", "bernoulli"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_policy_loss_moves_probability_of_taken_action_with_advantage(action, sign):
    torch.manual_seed(0)
    logits = torch.randn(4, 1, 8, 8, requires_grad=True)
    p = torch.sigmoid(logits)
    a = (p.detach() > 0.5).float() if action == "threshold" else torch.bernoulli(p.detach())
    loss = policy_loss(p, a, torch.tensor(sign), lambda_zeros=0.0)
    loss.backward()
    with torch.no_grad():
        p_new = torch.sigmoid(logits - 1.0 * logits.grad)
        logp_old = (a * p.log() + (1 - a) * (1 - p).log()).sum()
        logp_new = (a * p_new.log() + (1 - a) * (1 - p_new).log()).sum()
    assert (logp_new > logp_old) if sign > 0 else (logp_new < logp_old)


def test_zeros_regulariser_lowers_probabilities():
    logits = torch.zeros(2, 1, 4, 4, requires_grad=True)
    p = torch.sigmoid(logits)
    policy_loss(p, (p.detach() > 0.5).float(), torch.tensor(0.0), lambda_zeros=0.1).backward()
    assert bool((logits.grad > 0).all())  # gradient descent lowers every logit


def _apga(**opts):
    ctx = make_ctx()
    m = APGA(policy_width=4, **opts)
    m.setup(ctx)
    return ctx, m


@pytest.mark.parametrize("update", ["after", "before"])
def test_apga_ema_baseline_matches_definition(update):
    ctx, m = _apga(baseline_update=update)
    torch.manual_seed(1)
    b = 0.0
    for _ in range(3):
        x, y = torch.rand(6, 1, 32, 32), torch.randint(0, 2, (6,))
        logs = m.train_step(ctx, x, y)
        b = 0.5 * b + 0.5 * float(logs["reward"])
        assert float(m.baseline) == pytest.approx(b, abs=1e-6)


def test_apga_masks_binary_shape_device_and_policy_changes():
    ctx = make_ctx(size=64)
    m = APGA(policy_width=4, action="bernoulli", reward="sample", policy_size=32)  # mask upsampled 32 -> 64
    m.setup(ctx)
    before = [p.clone() for p in m.policy.parameters()]
    x, y = torch.rand(5, 1, 64, 64), torch.randint(0, 2, (5,))
    logs = m.train_step(ctx, x, y)
    assert all(torch.isfinite(v) for v in logs.values())
    mask = m.masks(ctx, x)
    assert mask.shape == (5, 1, 64, 64) and mask.device == x.device
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert any(not torch.equal(a, b) for a, b in zip(before, m.policy.parameters()))


def test_apga_presets_and_tta():
    assert APGA(preset="code").opts.loss_weights == "code"
    assert APGA(preset="code").opts.baseline_update == "before"
    assert APGA().opts.baseline_update == "after"
    assert APGA(preset="code", action="bernoulli").opts.action == "bernoulli"
    ctx, m = _apga(tta=True)
    probs = m.predict(ctx, torch.rand(3, 1, 32, 32)).exp()
    assert torch.allclose(probs.sum(1), torch.ones(3), atol=1e-5)


def test_apga_leave_one_out_advantage_and_fills():
    """samples=K: each mask's advantage is its reward minus the mean of its image's other K-1 rewards
    (so they sum to 0 per image); fill sets what the erased pixels of x_adv become."""
    from medaug.methods.apga import erase

    ctx, m = _apga(action="bernoulli", reward="sample", samples=3)
    loss_orig = torch.tensor([1.0, 2.0]).repeat(3)
    loss_adv = torch.tensor([1.5, 2.0, 3.0, 2.5, 1.0, 4.0])  # [K=3, B=2], sample-major
    r, adv = m.reward_and_advantage(ctx, loss_adv, loss_orig)
    rk = (loss_adv - loss_orig).view(3, 2)
    want = torch.stack([rk[k] - torch.cat([rk[:k], rk[k + 1:]]).mean(0) for k in range(3)]).flatten()
    assert torch.allclose(adv, want) and torch.allclose(adv.view(3, 2).sum(0), torch.zeros(2), atol=1e-6)
    logs = m.train_step(ctx, torch.rand(4, 1, 32, 32), torch.randint(0, 2, (4,)))
    assert all(torch.isfinite(v) for v in logs.values())
    with pytest.raises(MedaugError, match="samples 2"):
        APGA(preset="paper", samples=2)  # a threshold action is deterministic: K copies of one mask

    x = torch.zeros(1, 1, 32, 32)
    x[..., ::2, ::2] = 1.0  # fine detail, mean 0.25
    a = torch.zeros(1, 1, 32, 32)
    a[..., 8:24, 8:24] = 1
    assert torch.equal(erase(x, a, "zero"), x * (1 - a))
    assert torch.allclose(erase(x, a, "mean")[..., 8:24, 8:24], torch.full((16, 16), 0.25))
    blurred = erase(x, a, "blur")
    assert torch.equal(blurred[a == 0], x[a == 0])
    assert (blurred[..., 12:20, 12:20] - 0.25).abs().max() < 0.02  # the detail is gone where erased


def test_gradcam_batches_and_leaves_model_gradients_alone():
    ctx = make_ctx()
    model = ctx.model.eval()
    layer = dict(model.named_modules())["features.3"]
    x = torch.rand(4, 1, 32, 32)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    cam = grad_cam(model, layer, x)
    assert cam.shape == (4, 1, 32, 32)
    assert torch.allclose(cam.flatten(1).amax(1), torch.ones(4)) or bool((cam.flatten(1).amax(1) == 0).any())
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    # each image's map matches the single-image computation (batching is exact)
    single = torch.cat([grad_cam(model, layer, x[i : i + 1]) for i in range(4)])
    assert torch.allclose(cam, single, atol=1e-5)


@pytest.mark.parametrize("preset", ["learn", "paper"])
@pytest.mark.parametrize("policy_size", [0, 28])
def test_policy_runs_on_28px_images(preset, policy_size):
    """28 px (MedMNIST) is no multiple of TernausNet's 32: the policy runs at 32 px, masks come back at 28."""
    ctx = make_ctx(size=28)
    m = APGA(preset=preset, policy_width=4, policy_size=policy_size)
    m.setup(ctx)
    assert m.policy.side(28) == 32
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 2, (4,))
    logs = m.train_step(ctx, x, y)
    assert all(torch.isfinite(v) for v in logs.values())
    assert m.masks(ctx, x).shape == (4, 1, 28, 28) and m.saliency(ctx, x).shape == (4, 1, 28, 28)
    e2e = create_method("end2end", {"policy_width": 4})
    e2e.setup(ctx)
    assert e2e.masks(ctx, x).shape == (4, 1, 28, 28)
    with pytest.raises(MedaugError, match="policy_size"):
        APGA(policy_size=-1, policy_width=4).setup(ctx)


def test_blank_image_guard_uses_the_image_unmasked():
    from medaug.methods.apga import guard_blank

    keep = torch.zeros(3, 1, 8, 8)
    keep[1, :, :2, :2] = 1  # keeps 4/64 = 6%
    keep[2, :, :4] = 1  # keeps half
    guarded, kept = guard_blank(keep, 0.1)
    assert torch.allclose(kept, torch.tensor([0.0, 4 / 64, 0.5]))
    assert bool((guarded[0] == 1).all() and (guarded[1] == 1).all()) and torch.equal(guarded[2], keep[2])
    assert torch.equal(guard_blank(keep, 0.0)[0], keep)  # off: the paper's behaviour
    assert APGA(preset="paper").opts.min_keep == 0 and APGA(preset="code").opts.min_keep == 0
    assert APGA(preset="learn").opts.min_keep > 0  # on in the preset that learns


@pytest.mark.parametrize("step", ["fused", "sequential"])
def test_blank_image_guard_in_the_training_step(step):
    """A policy with P ~ 0 (nothing kept): with min_keep the classifier trains on [x ; x], not [x ; 0]."""
    import copy

    from medaug.methods.base import concat_step

    ctx = make_ctx()
    ctx.optimizer = torch.optim.SGD(ctx.model.parameters(), 0.1)  # SGD: Adam would amplify float round-off
    x, y = torch.rand(6, 1, 32, 32), torch.randint(0, 2, (6,))
    m = APGA(preset="paper", policy_width=4, init_useful=1e-4, min_keep=0.05, step=step)
    m.setup(ctx)
    ref = copy.deepcopy(ctx.model)
    ref_ctx = Context(ref, torch.optim.SGD(ref.parameters(), 0.1), ctx.device, ctx.cfg, 2, ctx.scaler)
    torch.manual_seed(5)  # the same dropout masks in both updates
    logs = m.train_step(ctx, x, y)
    assert float(logs["kept_fraction"]) == 0 and float(logs["guarded"]) == 1
    if step == "fused":  # its classifier update is exactly the 1:1 update on [x ; x]
        torch.manual_seed(5)
        concat_step(ref_ctx, x, y, x)
        for got, want in zip(ctx.model.state_dict().values(), ref.state_dict().values()):
            torch.testing.assert_close(got, want)


def test_one_normalisation_for_classifier_and_policy_and_per_image_loss():
    """Context, PixelPolicy and the quality extractor share medaug.models.inputs.normalize; ctx.loss
    with reduction='none' is the per-image cross-entropy the policy methods use."""
    from medaug.models.inputs import normalize
    from medaug.models.policies import PixelPolicy

    x = torch.rand(3, 1, 32, 32)
    ctx = make_ctx(in_channels=3)
    assert torch.equal(ctx.normalize(x), ((x - 0.5) / 0.25).expand(-1, 3, -1, -1))
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, t):
            seen["x"] = t
            return t[:, :1]

    PixelPolicy(Probe(), 0, in_channels=3)(x)
    assert torch.equal(seen["x"], normalize(x, 3))
    logits, y = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    per_image = ctx.loss(logits, y, reduction="none")
    assert per_image.shape == (4,) and torch.allclose(per_image.mean(), ctx.loss(logits, y))
    assert torch.allclose(per_image, -torch.log_softmax(logits, 1)[torch.arange(4), y])


def test_gradcam_method_unknown_layer():
    ctx = make_ctx()
    with pytest.raises(MedaugError, match="layer"):
        create_method("gradcam", {"layer": "nope"}).setup(ctx)


def test_end2end_backpropagates_into_the_segmenter():
    ctx = make_ctx()
    m = create_method("end2end", {"policy_width": 4})
    m.setup(ctx)
    x, y = torch.rand(4, 1, 32, 32), torch.randint(0, 2, (4,))
    p, keep = m.soft_hard_mask(ctx, x)
    loss = ctx.loss(ctx.logits(keep * x), y)  # classification loss only, no regulariser
    grads = torch.autograd.grad(loss, list(m.policy.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_fused_apga_step_equals_pass_by_pass_reference_float64():
    """The fused step (one concatenated classifier pass, one backward for both networks) makes
    the same updates as the same rule computed pass by pass, in float64 on a BatchNorm-free model."""
    import copy

    import torch.nn.functional as F
    from torch import nn

    from medaug.models.policies import PixelPolicy

    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 2))
        cfg = TrainConfig(data="x", size=32)
        ctx = Context(net, torch.optim.Adam(net.parameters(), 1e-2), torch.device("cpu"), cfg, 2, torch.amp.GradScaler("cpu", enabled=False))
        fused = APGA(preset="paper", policy_width=4, step="fused", reward="sample")
        fused.setup(ctx)
        ref_net, ref_policy = copy.deepcopy(net), copy.deepcopy(fused.policy)
        x, y = torch.rand(6, 1, 32, 32), torch.randint(0, 2, (6,))
        fused.train_step(ctx, x, y)

        # reference: the same rule, one pass and one update at a time
        opt_c, opt_p = torch.optim.Adam(ref_net.parameters(), 1e-2), torch.optim.Adam(ref_policy.parameters(), 1e-4)
        p = ref_policy(x)
        a = (p.detach() > 0.5).double()
        with torch.no_grad():
            loss_adv = F.cross_entropy(ref_net((x * (1 - a) - 0.5) / 0.25), y, reduction="none")
        loss_orig = F.cross_entropy(ref_net((x - 0.5) / 0.25), y, reduction="none")
        loss_aid = F.cross_entropy(ref_net((x * a - 0.5) / 0.25), y, reduction="none")
        opt_c.zero_grad()
        ((loss_orig.sum() + loss_aid.sum()) / 12).backward()
        opt_c.step()
        advantage = (loss_adv - loss_orig.detach()) - 0.0  # b_{t-1} = 0 ('after' update)
        opt_p.zero_grad()
        policy_loss(p, a, advantage, 0.1).backward()
        opt_p.step()
        for got, want in zip(list(net.parameters()) + list(fused.policy.parameters()),
                             list(ref_net.parameters()) + list(ref_policy.parameters())):
            assert torch.allclose(got, want, atol=1e-10, rtol=1e-8)
        assert isinstance(fused.policy, PixelPolicy)
    finally:
        torch.set_default_dtype(torch.float32)


def test_fused_apga_with_batchnorm_rewards_nothing_erased_with_zero_and_trains_on_clean_halves_only():
    """With BatchNorm (float64): L_adv is computed with the statistics of [x ; aided x], so a policy
    that erases nothing earns R = 0 exactly, and the classifier's update (weights and running
    statistics) is the plain 1:1 update on [x ; aided x]: the adversarial images do not touch it."""
    import copy

    from torch import nn

    from medaug.methods.base import concat_step

    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                            nn.Flatten(), nn.Linear(16, 2))
        cfg = TrainConfig(data="x", size=32)
        ctx = Context(net, torch.optim.Adam(net.parameters(), 1e-2), torch.device("cpu"), cfg, 2,
                      torch.amp.GradScaler("cpu", enabled=False))
        x, y = torch.rand(6, 1, 32, 32), torch.randint(0, 2, (6,))
        for init_useful, erased in ((1e-4, False), (0.5, True)):  # P ~ 0: nothing useful, nothing erased
            apga = APGA(preset="paper", policy_width=4, step="fused", init_useful=init_useful)
            apga.setup(ctx)
            with torch.no_grad():
                aid = (apga.policy(x) > 0.5).double()
            ref = copy.deepcopy(net)
            ref_ctx = Context(ref, torch.optim.Adam(ref.parameters(), 1e-2), ctx.device, cfg, 2, ctx.scaler)
            ref_ctx.optimizer.load_state_dict(copy.deepcopy(ctx.optimizer.state_dict()))
            logs = apga.train_step(ctx, x, y)
            concat_step(ref_ctx, x, y, x * aid)
            assert (logs["useful_fraction"] > 0) == erased
            if not erased:
                assert logs["reward"] == 0 and logs["loss_adv"] == logs["loss"]
            for got, want in zip(net.state_dict().values(), ref.state_dict().values()):
                torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    finally:
        torch.set_default_dtype(torch.float32)


def test_apga_run_learns_where_the_finding_is(tmp_path):
    """Tiny end-to-end APGA on synthetic data with known findings: the trained policy ranks finding
    pixels higher (pixel AUROC of P against the true regions) than the same policy at initialisation."""
    import numpy as np

    from medaug.data.synth import generate
    from medaug.metrics import mask_metrics
    from medaug.train import fit, load_data, predict_masks

    data = generate(tmp_path / "d", n_train=240, n_test=120, size=64, seed=1, progress=False)
    base = TrainConfig(data=str(data), size=64, epochs=8, batch_size=32, progress=False, cache=str(tmp_path / "c"))
    fit(base, tmp_path / "none")
    opts = dict(preset="paper", policy_width=8, policy_size=32, step="fused", action="bernoulli", reward="sample", action_grid=8,
                init_useful=0.1, policy_lr=1e-3, lambda_zeros=0.01)
    cfg = TrainConfig(**{**base.to_dict(), "method": "apga", "method_options": opts, "epochs": 10,
                         "baseline": str(tmp_path / "none"), "finetune_lr": 5e-4, "budget": "paper"})
    trained = fit(cfg, tmp_path / "apga")["mask"]["saliency_auroc"]

    ds = load_data(cfg)
    ctx = make_ctx(size=64)
    torch.manual_seed(cfg.seed)
    untrained = APGA(**opts)
    untrained.setup(ctx)
    sal = predict_masks(untrained, ctx, ds.test.images, soft=True)
    initial = mask_metrics(sal > 0.5, ds.test.rois.astype(bool), sal)["saliency_auroc"]
    print(f"saliency AUROC: initial {initial:.3f}, trained {trained:.3f}")
    assert np.isfinite(trained) and trained > initial + 0.03, (initial, trained)
