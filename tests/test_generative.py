"""Generative augmentation: GAN/ADA, diffusion sampling, quality metrics, the `generative` method, end to end.

Networks are shrunk (16-32 px, 8-16 channels) so the whole file runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from medaug.generative.gan import GAN, AdaController, ada_augment, diff_augment
from medaug.generative.quality import density_coverage, fid, kid, precision_recall, write_image_folder

TINY_GAN = dict(channel_base=128, channel_max=16, z_dim=16, w_dim=16)
TINY_DIFFUSION = dict(channels=[16, 16], attention_levels=[False, False], norm_num_groups=8, num_head_channels=16, ddim_steps=4)
CPU = torch.device("cpu")


# ----------------------------------------------------------------------------------------------
# GAN and ADA


def test_gan_conditional_sampling_gives_requested_class_counts():
    from medaug.generative.train import sample_per_class

    torch.manual_seed(0)
    gan = GAN(3, 16, 4, CPU, TINY_GAN)
    images, labels = sample_per_class(gan, 3, 5, seed=1)
    assert images.shape == (15, 1, 16, 16) and images.dtype == np.uint8  # [N, C, S, S], gray here
    assert np.bincount(labels).tolist() == [5, 5, 5]
    again, _ = sample_per_class(gan, 3, 5, seed=1)
    assert np.array_equal(images, again)  # same seed, same images


def test_gan_class_label_changes_the_image():
    torch.manual_seed(0)
    gan = GAN(2, 16, 4, CPU, TINY_GAN)
    a = gan.sample(torch.tensor([0, 0]), seed=3)
    b = gan.sample(torch.tensor([1, 1]), seed=3)  # same z, other class
    assert not torch.allclose(a, b)


def test_class_truncation_keeps_the_label_where_global_truncation_washes_it_out():
    torch.manual_seed(0)
    gan = GAN(2, 16, 4, CPU, TINY_GAN)
    for _ in range(3):  # track a running w_avg as training does (one of a majority class's batches)
        gan.G.mapping(torch.randn(16, gan.opts.z_dim), torch.ones(16, dtype=torch.long), track=True)
    gan.G_ema.load_state_dict(gan.G.state_dict())
    labels = torch.tensor([0, 0, 1, 1])
    gan.opts.truncation, gan.opts.truncation_center = 0.0, "global"
    x = gan.sample(labels, seed=0)  # psi 0 toward the global w_avg: one image whatever the class
    assert torch.allclose(x[0], x[2], atol=1e-6) and torch.allclose(x[0], x[1], atol=1e-6)
    gan.opts.truncation_center = "class"
    x = gan.sample(labels, seed=0)  # psi 0 toward each class's centre: one image per class, the classes differ
    assert torch.allclose(x[0], x[1], atol=1e-6) and torch.allclose(x[2], x[3], atol=1e-6)
    assert not torch.allclose(x[0], x[2], atol=1e-3)
    centers = gan.class_centers()
    assert centers.shape == (2, gan.opts.w_dim) and torch.equal(centers, gan.class_centers())  # fixed seed


def test_gan_presets_fill_only_the_options_left_unset():
    o = GAN.Options()
    assert (o.preset, o.balanced, o.truncation, o.truncation_center) == ("balanced", True, 1.0, "class")
    p = GAN.Options(preset="paper")
    assert (p.balanced, p.truncation, p.truncation_center) == (False, 1.0, "global")
    assert GAN.Options(preset="paper", balanced=True).balanced is True
    with pytest.raises(ValueError, match="preset"):
        GAN.Options(preset="nosuch")


def test_balanced_batches_draw_each_class_equally_often_and_depend_only_on_seed_and_step():
    from medaug.generative.train import batch_indices

    labels = torch.tensor([0] * 20 + [1] * 180)  # 10% minority
    drawn = {b: torch.cat([labels[batch_indices(labels, 16, 0, step, b)] for step in range(200)]) for b in (False, True)}
    assert abs(drawn[True].float().mean().item() - 0.5) < 0.05  # balanced: half the draws are the minority's
    assert abs(drawn[False].float().mean().item() - 0.9) < 0.05  # uniform: as in the data
    idx = batch_indices(labels, 16, 3, 7, True)
    assert len(set(idx.tolist())) == 16 and torch.equal(idx, batch_indices(labels, 16, 3, 7, True))


def test_ada_p_rises_when_discriminator_is_overconfident_on_reals():
    ada = AdaController(target=0.6, interval=4, kimg=0.1)
    for _ in range(40):  # an overfitting D: sign(D(real)) = +1 everywhere, r_t = 1 > 0.6
        ada.accumulate(torch.ones(16))
        ada.step()
    assert ada.rt == pytest.approx(1.0)
    assert ada.p == pytest.approx(min(1.0, 10 * 64 / 100))  # 10 adjustments of 64 images / 100 images
    high = ada.p
    for _ in range(8):  # D unsure on reals (r_t = -1 < target): p comes back down
        ada.accumulate(-torch.ones(16))
        ada.step()
    assert ada.p < high


def test_ada_p_stays_zero_without_overfitting():
    ada = AdaController(target=0.6, interval=2, kimg=0.1)
    signs = torch.tensor([1.0, 1.0, -1.0, -1.0] * 4)  # r_t = 0 < 0.6
    for _ in range(20):
        ada.accumulate(signs)
        ada.step()
    assert ada.p == 0.0 and ada.rt == pytest.approx(0.0)


def test_ada_p_rises_in_real_training_on_a_tiny_set():
    torch.manual_seed(0)
    gan = GAN(2, 16, 8, CPU, {**TINY_GAN, "ada_interval": 1, "ada_kimg": 0.05})
    real = torch.rand(8, 1, 16, 16) * 2 - 1  # 8 images, seen every step: D overfits them
    labels = torch.tensor([0, 1] * 4)
    for _ in range(6):
        gan.train_step(real, labels)
    assert gan.ada.rt > 0.6
    assert gan.ada.p > 0.0


def test_augmentations_are_differentiable_and_identity_at_p0():
    x = torch.rand(4, 1, 16, 16, requires_grad=True)
    assert torch.equal(ada_augment(x, 0.0), x)
    y = ada_augment(x, 1.0)
    y.sum().backward()
    assert y.shape == x.shape and x.grad is not None and x.grad.abs().sum() > 0
    x.grad = None
    diff_augment(x).sum().backward()
    assert x.grad is not None


def test_integer_translation_and_flip_are_exact():
    # with only the blit part, the ADA warp moves pixels exactly (no interpolation blur)
    from medaug.generative.gan import _scale, _translate
    import torch.nn.functional as F

    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    M = _translate(torch.tensor([2 * 2 / 8]), torch.tensor([0.0])) @ _scale(torch.tensor([-1.0]), torch.tensor([1.0]))
    grid = F.affine_grid(M[:, :2], [1, 1, 8, 8], align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    assert torch.allclose(y, y.round())  # every output pixel is an input pixel


def test_gan_resume_is_exact(tmp_path, tiny_data):
    from medaug.generative.train import GenConfig, train_generator

    base = dict(data=str(tiny_data), size=16, batch_size=8, seed=0, progress=False, options=TINY_GAN, ckpt_every=2)
    train_generator(GenConfig(steps=4, **base), tmp_path / "a")  # stopped after 4 steps, then extended
    info = train_generator(GenConfig(steps=6, **base), tmp_path / "a")
    assert info["steps"] == 6
    train_generator(GenConfig(steps=6, **base), tmp_path / "b")  # uninterrupted
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]["G_ema"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]["G_ema"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------------------
# diffusion


def test_ddim_sampler_is_deterministic_given_a_seed():
    from medaug.generative.diffusion import Diffusion

    torch.manual_seed(0)
    model = Diffusion(2, 16, 4, CPU, TINY_DIFFUSION)
    model.train_step(torch.rand(4, 1, 16, 16) * 2 - 1, torch.tensor([0, 1, 0, 1]))
    labels = torch.tensor([0, 1, 1])
    a, b = model.sample(labels, seed=7), model.sample(labels, seed=7)
    assert a.shape == (3, 1, 16, 16) and torch.equal(a, b)
    assert not torch.equal(a, model.sample(labels, seed=8))
    assert 0 <= float(a.min()) and float(a.max()) <= 1



def test_guidance_one_takes_the_single_conditional_forward_with_the_same_images():
    """w = 1 skips the null-class branch; eps_u + 1 * (eps_c - eps_u) = eps_c, so the images agree with the guided path."""
    from medaug.generative.diffusion import Diffusion

    torch.manual_seed(0)
    model = Diffusion(2, 16, 4, CPU, TINY_DIFFUSION)
    model.train_step(torch.rand(4, 1, 16, 16) * 2 - 1, torch.tensor([0, 1, 0, 1]))
    calls = []
    model.ema.register_forward_hook(lambda m, inp, out: calls.append(len(inp[0])))
    labels = torch.tensor([0, 1, 1])
    single = model.sample(labels, seed=3, guidance=1.0)
    assert set(calls) == {3}  # one forward of the 3 images per DDIM step
    calls.clear()
    guided = model.sample(labels, seed=3, guidance=1.0 + 1e-9)
    assert set(calls) == {6}  # conditional and null branch batched together
    assert torch.allclose(single, guided, atol=1e-4)


def test_gen_config_steps_default_to_the_models_budget():
    from medaug.generative.train import GenConfig

    assert GenConfig(model="gan").steps == 500 and GenConfig(model="diffusion").steps == 1000
    assert GenConfig(model="diffusion", steps=7).steps == 7

# ----------------------------------------------------------------------------------------------
# quality metrics


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-6)
    values = [fid(x, x + rng.normal(scale=s, size=x.shape)) for s in (0.1, 0.5, 1.0, 2.0)]
    assert values[0] < 0.2 and all(a < b for a, b in zip(values, values[1:]))


def test_fid_matches_the_closed_form_for_gaussians():
    # N(0, I) vs N(m, 4I) in d dims: |m|^2 + d (1 + 4 - 2 * 2) = |m|^2 + d
    rng = np.random.default_rng(1)
    d, n = 4, 200_000
    x, y = rng.normal(size=(n, d)), rng.normal(loc=0.5, scale=2.0, size=(n, d))
    assert fid(x, y) == pytest.approx(0.25 * d + d, rel=0.02)


def test_kid_is_unbiased_on_equal_distributions():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(500, 8)), rng.normal(size=(500, 8))
    mean, std = kid(x, y, n_subsets=200, subset_size=50, seed=0)
    shifted, _ = kid(x, y + 0.5, n_subsets=50, subset_size=50, seed=0)
    assert abs(mean) < 3 * std / np.sqrt(200) + 1e-3  # ~0 (a biased V-statistic would be clearly > 0)
    assert shifted > 10 * abs(mean) and shifted > 0


def test_precision_recall_density_coverage():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 4))
    p, r = precision_recall(real, rng.normal(size=(300, 4)))
    d, c = density_coverage(real, rng.normal(size=(300, 4)))
    assert p > 0.8 and r > 0.8 and 0.7 < d < 1.3 and c > 0.8
    collapsed = np.repeat(real[:1], 300, 0) + 1e-3 * rng.normal(size=(300, 4))  # mode collapse: precise, no recall
    p, r = precision_recall(real, collapsed)
    d, c = density_coverage(real, collapsed)
    assert p == 1.0 and r < 0.1 and c < 0.1
    far = real + 10
    assert precision_recall(real, far)[0] == 0.0 and density_coverage(real, far) == (0.0, 0.0)


def test_conditional_agreement_overall_balanced_per_class_and_near_chance():
    from medaug.generative.quality import agreement_warning, conditional_agreement

    classes = ["a", "b"]
    drawn = np.array([0] * 10 + [1] * 30)
    a = conditional_agreement(np.array([0] * 8 + [1] * 2 + [1] * 27 + [0] * 3), drawn, classes)
    assert a["per_class"] == {"a": 0.8, "b": 0.9} and a["overall"] == pytest.approx(35 / 40)
    assert a["balanced"] == pytest.approx(0.85) and a["confusion"] == [[8, 2], [3, 27]]
    assert not a["label_ignored"] and agreement_warning(a) == ""
    # a generator that ignores its label: the classifier's verdict does not depend on the drawn class.
    # A biased classifier (90% "b") gives a high *overall* agreement; the balanced one stays at chance.
    ignored = conditional_agreement(np.array([0] * 1 + [1] * 9 + [0] * 3 + [1] * 27), drawn, classes)
    assert ignored["overall"] == pytest.approx(28 / 40) and ignored["balanced"] == pytest.approx(0.5)
    assert ignored["label_ignored"] and "ignores its class label" in agreement_warning(ignored)


# ----------------------------------------------------------------------------------------------
# the `generative` method


@pytest.fixture
def class_coded_samples(tmp_path):
    """Synthetic ImageFolder whose images carry their class in the pixel value (0 -> 40, 1 -> 200)."""
    images = np.concatenate([np.full((3, 8, 8), 40, np.uint8), np.full((5, 8, 8), 200, np.uint8)])
    labels = np.array([0] * 3 + [1] * 5)
    return write_image_folder(images, labels, ["negative", "positive"], tmp_path / "samples")


def _ctx(seen: list):
    def logits(x):
        seen.append(x.detach().clone())
        return torch.zeros(len(x), 2, requires_grad=True)

    cfg = SimpleNamespace(size=8, seed=0)
    return SimpleNamespace(cfg=cfg, device=CPU, num_classes=2, channels=1, extras={"classes": ["negative", "positive"]}, logits=logits,
                           loss=lambda lg, y: (lg.sum() * 0 + y.float().sum() * 0), step=lambda loss: None)


@pytest.mark.parametrize("ratio,n_syn", [(1.0, 6), (2.0, 12), (0.5, 3), (0.0, 0)])
def test_generative_mixes_the_ratio_per_class(class_coded_samples, ratio, n_syn):
    from medaug.methods import create_method

    method = create_method("generative", {"samples": str(class_coded_samples), "ratio": ratio})
    seen: list = []
    ctx = _ctx(seen)
    method.setup(ctx)
    y = torch.tensor([0, 0, 1, 1, 1, 0])
    x = torch.full((6, 1, 8, 8), 0.5)
    logs = method.train_step(ctx, x, y)
    batch = seen[0]
    assert len(batch) == 6 + n_syn
    assert float(logs["synthetic_fraction"]) == pytest.approx(n_syn / (6 + n_syn))
    syn = batch[6:]
    y_syn = method.synthetic_labels(y)  # labels are drawn from the real batch
    if ratio == 1.0:
        # exactly one synthetic image of the same class per real image: per-class 1:1
        values = (syn[:, 0, 0, 0] * 255).round()
        assert values.tolist() == [40.0 if v == 0 else 200.0 for v in y.tolist()]
    if ratio == 2.0:
        assert torch.bincount(y_syn, minlength=2).tolist() == [6, 6]
    assert len(y_syn) == n_syn


def test_generative_draws_only_the_requested_class(class_coded_samples):
    from medaug.methods import create_method

    method = create_method("generative", {"samples": str(class_coded_samples)})
    method.setup(_ctx([]))
    for label, value in ((0, 40), (1, 200)):
        imgs = method.draw(torch.full((50,), label))
        assert torch.all((imgs * 255).round() == value)


def test_generative_errors_are_clear(tmp_path, class_coded_samples):
    from medaug.errors import MedaugError
    from medaug.methods import create_method

    with pytest.raises(MedaugError, match="samples=DIR"):
        create_method("generative").setup(_ctx([]))
    ctx = _ctx([])
    ctx.extras["classes"] = ["negative", "other"]
    with pytest.raises(MedaugError, match="positive"):
        create_method("generative", {"samples": str(class_coded_samples)}).setup(ctx)


# ----------------------------------------------------------------------------------------------
# end to end: gen train -> sample -> eval -> train with `generative`


def test_end_to_end_gan_to_classifier(tmp_path, tiny_data):
    import json

    from typer.testing import CliRunner

    from medaug.cli import app

    runner = CliRunner()
    gen, samples = tmp_path / "gen", tmp_path / "samples"
    opts = [x for k, v in TINY_GAN.items() for x in ("-o", f"{k}={v}")]
    res = runner.invoke(app, ["gen", "train", "--data", str(tiny_data), "--model", "gan", "--steps", "3", "--size", "32",
                              "--batch-size", "8", "--out", str(gen), *opts])
    assert res.exit_code == 0, res.output
    assert (gen / "generator.json").is_file() and (gen / "preview.png").is_file()
    log = [json.loads(line) for line in (gen / "log.jsonl").read_text().splitlines()]
    assert {"loss_G", "loss_D", "ada_p"} <= set(log[-1])

    res = runner.invoke(app, ["gen", "sample", "--model", str(gen), "--per-class", "6", "--out", str(samples)])
    assert res.exit_code == 0, res.output
    for cls in ("negative", "positive"):
        assert len(list((samples / cls).glob("*.png"))) == 6
        assert (samples / f"contact_{cls}.png").is_file()

    res = runner.invoke(app, ["gen", "eval", "--real", str(tiny_data), "--fake", str(samples), "--size", "32",
                              "--epochs", "1", "--out", str(tmp_path / "quality")])
    assert res.exit_code == 0, res.output
    q = json.loads((tmp_path / "quality" / "quality.json").read_text())
    assert q["extractor"].startswith("medaug-tiny")
    assert "medaug-tiny" in res.output  # the extractor is named next to the numbers
    for key in ("fid", "kid", "precision", "recall", "density", "coverage"):
        assert np.isfinite(q["all"][key])
    assert 0 <= q["tstr"]["accuracy"] <= 1 and (tmp_path / "quality" / "memorisation.png").is_file()
    a = q["agreement"]  # conditional agreement of the real-trained classifier on the 6 + 6 samples
    assert set(a["per_class"]) == {"negative", "positive"} and np.array(a["confusion"]).sum() == 12
    assert a["balanced"] == pytest.approx(np.mean(list(a["per_class"].values())))
    assert "conditional agreement" in res.output
    md = (tmp_path / "quality" / "quality.md").read_text()
    assert "Conditional agreement" in md and "TSTR" in md
    for cls in ("negative", "positive"):
        assert (tmp_path / "quality" / f"contact_{cls}.png").is_file() and f"contact_{cls}.png" in md

    res = runner.invoke(app, ["train", "--data", str(tiny_data), "--method", "generative", "-o", f"samples={samples}",
                              "--size", "32", "--epochs", "1", "--out", str(tmp_path / "runs/synth/generative/shot-all/seed-0")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "runs/synth/generative/shot-all/seed-0" / "metrics.json").read_text())
    assert m["method"] == "generative" and 0 <= m["test"]["accuracy"] <= 1

    # medaug report: the samples the run trained on, with gen eval's agreement and real-beside-synthetic sheets
    res = runner.invoke(app, ["report", str(tmp_path / "runs"), "--baseline", "generative", "--out", str(tmp_path / "report")])
    assert res.exit_code == 0, res.output
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Synthetic images used by `generative`" in report and "Conditional agreement" in report
    assert f"{a['balanced']:.1%} balanced" in report
    assert (tmp_path / "report" / "synthetic_0_negative.png").is_file() and "real (left) beside synthetic" in report


def test_gen_eval_warns_when_samples_ignore_their_label(tmp_path, tiny_data):
    """The same images filed under both classes: the classifier's verdict cannot depend on the class, agreement is 50%."""
    import json

    from typer.testing import CliRunner

    from medaug.cli import app
    from medaug.data.cache import load_dataset

    real = load_dataset(tiny_data, size=32, progress=False)
    same = real.train.images[:10]
    fake = write_image_folder(np.concatenate([same, same]), np.array([0] * 10 + [1] * 10), real.classes, tmp_path / "fake")
    res = CliRunner().invoke(app, ["gen", "eval", "--real", str(tiny_data), "--fake", str(fake), "--size", "32", "--epochs", "1",
                                   "--no-tstr", "--out", str(tmp_path / "q")])
    assert res.exit_code == 0, res.output
    q = json.loads((tmp_path / "q" / "quality.json").read_text())
    assert q["agreement"]["balanced"] == pytest.approx(0.5) and q["agreement"]["label_ignored"]
    assert "WARNING" in res.output and "ignores its class label" in res.output
    assert "ignores its class label" in (tmp_path / "q" / "quality.md").read_text()


def test_size_study_compares_every_generative_variant_with_classical(tmp_path):
    """summarise_study on run folders as `study size --methods ...,generative,generative+classical` writes them."""
    import json

    from medaug.generative.study import summarise_study

    acc = {"classical": [0.70, 0.72], "generative": [0.60, 0.62], "generative+classical": [0.71, 0.73]}
    for method, values in acc.items():
        for seed, a in enumerate(values):
            run = tmp_path / "runs" / "d" / method / "shot-50" / f"seed-{seed}"
            run.mkdir(parents=True)
            m = {"method": method, "seed": seed, "n_shot": 50, "test": {"accuracy": a, "auroc": a}}
            if "+" in method:
                m["base_method"] = "generative"
            (run / "metrics.json").write_text(json.dumps(m))
    r = summarise_study(tmp_path)
    diffs = {c["method"]: c["diff_accuracy"] for c in r["comparison"]}
    assert diffs == pytest.approx({"generative": -0.10, "generative+classical": 0.01})
    assert "generative does not match classical" in r["answer"] and "generative+classical matches classical" in r["answer"]
    md = (tmp_path / "study.md").read_text()
    assert "generative+classical - classical" in md and "| 50 | generative+classical | 2 |" in md
