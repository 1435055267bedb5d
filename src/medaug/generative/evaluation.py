"""``medaug gen eval``: every quality number of a folder of generated images against the real data:
the feature metrics and memorisation of :mod:`medaug.generative.quality`, conditional agreement, and

- TSTR: a classifier trained on synthetic images only, tested on the real test split, beside the
  same classifier trained on the real training images (TRTR).

It trains classifiers (``train.fit``), so it sits above the training loop; quality.py does not.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ..config import NonNegInt, TrainConfig, check_range
from ..data.cache import ArraySplit, Dataset, load_dataset
from ..device import resolve_device
from ..io_utils import output_folder, write_json, write_text
from ..train import check_batch_memory, fit
from .quality import (agreement_warning, conditional_agreement, contact_sheet, feature_metrics, fid, kid, load_extractor,
                      memorisation, read_image_folder, run_classifier)


def classifier_config(size: int, epochs: int, seed: int, model: str = "tiny") -> TrainConfig:
    """The TrainConfig of the TSTR/TRTR classifiers."""
    return TrainConfig(data="-", size=size, epochs=epochs, seed=seed, model=model, batch_size=32, progress=False)


def train_on(images: np.ndarray, labels: np.ndarray, real, out: Path, cfg) -> dict:
    """Train a classifier on (images, labels), select on the real valid split, test on the real test split."""
    names = np.array([f"synthetic-{i}" for i in range(len(labels))])
    train = ArraySplit(images, labels, None, names, np.array([""] * len(labels)), names)
    ds = Dataset(train, real.valid, real.test, real.classes, real.fingerprint + "+synthetic", real.cache)
    return fit(cfg, out, ds)


def evaluate(real_data: str | Path, fake_dir: str | Path, out: str | Path, extractor: str | Path | None = None,
             size: int = 32, n_shot: int = 0, seed: int = 0, epochs: int = 10, tstr: bool = True,
             device: str = "auto", progress: bool = False, kid_subsets: int = 100, classes: str = "") -> dict:
    """Every quality number for ``fake_dir`` against the real training images of ``real_data``; writes quality.json.
    ``classes``: the class mapping the generator was trained with (``--classes``)."""
    check_range("--n-shot", n_shot, NonNegInt)
    cfg = dataclasses.replace(classifier_config(size, epochs, seed), device=device, classes=classes)  # size, epochs, seed: checked here
    check_batch_memory(cfg)
    given = load_extractor(extractor, resolve_device(device)) if extractor is not None else None  # a bad file: before any output
    out = output_folder(out, "quality", inputs=(real_data, fake_dir))
    real = load_dataset(real_data, size=size, n_shot=n_shot or None, shot_seed=seed, progress=progress, classes=classes)
    fake, fake_labels, _ = read_image_folder(fake_dir, size, real.classes, channels=real.channels)
    result: dict = {"real": str(real_data), "fake": str(fake_dir), "size": size, "n_shot": n_shot, "classes": real.classes}
    trtr = None
    if extractor is None or tstr:  # the classifier trained on the real images: TRTR and the default extractor
        trtr = fit(cfg, out / "trtr", real)
    ext = given or load_extractor(out / "trtr", resolve_device(device))
    result["extractor"] = ext.name
    f_real, f_fake = ext.features(real.train.images), ext.features(fake)
    f_test = ext.features(real.test.images)
    result["all"] = feature_metrics(f_real, f_fake, kid_subsets, seed)
    # the same metrics for real test images vs the real training images: what "as good as real" looks like here
    result["real_test_reference"] = feature_metrics(f_real, f_test, kid_subsets, seed)
    result["per_class"] = {}
    for i, name in enumerate(real.classes):
        a, b = f_real[real.train.labels == i], f_fake[fake_labels == i]
        if len(a) > 5 and len(b) > 5:
            kid_mean, _ = kid(a, b, kid_subsets, seed=seed)
            result["per_class"][name] = {"fid": fid(a, b), "kid": kid_mean, "n_real": len(a), "n_fake": len(b)}
    result["memorisation"] = memorisation(fake, real.train.images, real.test.images, out)
    judge = out / "trtr" if trtr is not None else _run_folder(extractor)
    wrong = None
    if judge is not None:  # conditional agreement: the real-trained classifier's verdict on every sample
        clf = run_classifier(judge, resolve_device(device))
        pred = clf.features(fake).argmax(1)
        result["agreement"] = conditional_agreement(pred, fake_labels, real.classes)
        result["agreement"]["classifier"] = clf.name
        test_pred = clf.features(real.test.images).argmax(1)  # what real images score: the classifier's test recall
        result["agreement"]["real_test_reference"] = conditional_agreement(test_pred, real.test.labels, real.classes)["per_class"]
        wrong = pred != fake_labels
    result["contact_sheets"] = {}
    rng = np.random.default_rng(seed)
    for i, name in enumerate(real.classes):
        reals = real.train.images[real.train.labels == i]
        reals = reals[rng.permutation(len(reals))[:24]]
        sel = np.flatnonzero(fake_labels == i)[:24]
        share = f"; agreement {result['agreement']['per_class'][name]:.1%} (red: assigned to another class)" if wrong is not None and name in result["agreement"]["per_class"] else ""
        contact_sheet(reals, fake[sel], out / f"contact_{name}.png", title=f"{name}: real vs synthetic{share}",
                      fake_wrong=None if wrong is None else wrong[sel])
        result["contact_sheets"][name] = f"contact_{name}.png"
    if tstr:
        m = train_on(fake, fake_labels, real, out / "tstr", cfg)
        keys = ("accuracy", "balanced_accuracy", "macro_f1", "auroc")
        result["tstr"] = {k: m["test"].get(k) for k in keys}
        result["trtr"] = {k: trtr["test"].get(k) for k in keys}
        result["tstr_classifier"] = f"{cfg.model}, {epochs} epochs, seed {seed}, valid = real valid split, test = real test split"
    write_json(out / "quality.json", result)
    write_text(out / "quality.md", quality_markdown(result))
    info_file = Path(fake_dir) / "samples.json"
    if info_file.is_file():  # a folder of `medaug gen sample`: point it at its evaluation (`medaug report` shows it)
        write_json(info_file, {**json.loads(info_file.read_text()), "quality": str(out.resolve())})
    return result


def _run_folder(path) -> Path | None:
    """The medaug run folder behind ``--extractor`` (a folder or its best.pt), or None for TorchScript."""
    run = Path(path) if Path(path).is_dir() else Path(path).parent
    return run if (run / "config.toml").is_file() and (run / "best.pt").is_file() else None


def quality_markdown(r: dict) -> str:
    """quality.md: the numbers of quality.json as tables, the warnings, and the figures."""
    ext = r["extractor"]
    lines = [f"# Quality of {r['fake']}", "", f"Against the real training images of {r['real']} at {r['size']} px; "
             f"feature metrics on `{ext}` (numbers from different extractors do not compare).", ""]
    a = r.get("agreement")
    if a and a["label_ignored"]:
        lines += [f"**{agreement_warning(a)}**", ""]
    lines += ["| set | FID | KID | precision | recall | density | coverage | n real | n synthetic |", "|---|---|---|---|---|---|---|---|---|"]
    for name, m in (("synthetic vs real train", r["all"]), ("real test vs real train (floor)", r["real_test_reference"])):
        lines.append(f"| {name} | {m['fid']:.2f} | {m['kid']:.4f} ± {m['kid_std']:.4f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                     f"{m['density']:.3f} | {m['coverage']:.3f} | {m['n_real']} | {m['n_fake']} |")
    lines.append("")
    if a:
        lines += [f"Conditional agreement (share of samples that `{a['classifier']}`, trained on the real images, assigns to "
                  f"the class they were drawn for; chance {a['chance']:.0%}): **{a['balanced']:.1%} balanced** "
                  f"(mean over classes), {a['overall']:.1%} over all samples.", "",
                  "| class | FID | KID | agreement | the classifier's recall on real test images |", "|---|---|---|---|---|"]
    else:
        lines += ["| class | FID | KID |", "|---|---|---|"]
    for name in r["classes"]:
        m = r["per_class"].get(name, {})
        cells = [name, f"{m['fid']:.2f}" if m else "", f"{m['kid']:.4f}" if m else ""]
        if a:
            cells += [f"{a['per_class'][name]:.1%}" if name in a["per_class"] else "",
                      f"{a['real_test_reference'][name]:.1%}" if name in a["real_test_reference"] else ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if "tstr" in r:
        t, rr = r["tstr"], r["trtr"]
        lines += [f"TSTR (trained on synthetic, tested on the real test split) accuracy {t['accuracy']:.3f}, AUROC "
                  f"{t['auroc']:.3f}, macro F1 {t['macro_f1']:.3f}; TRTR (trained on real) accuracy {rr['accuracy']:.3f}, "
                  f"AUROC {rr['auroc']:.3f}, macro F1 {rr['macro_f1']:.3f}; TSTR/TRTR accuracy "
                  f"{t['accuracy'] / rr['accuracy']:.2f} ({r['tstr_classifier']}).", ""]
    mem = r["memorisation"]
    if "frac_closer_than_ref_p05" in mem:
        lines += [f"Memorisation: median nearest-training-image distance (pixel RMS) {mem['nn_dist_median']:.3f} for synthetic, "
                  f"{mem['ref_nn_dist_median']:.3f} for real test images; {mem['frac_closer_than_ref_p05']:.1%} of the synthetic "
                  "images are closer to a training image than 95% of real test images.", ""]
    lines += ["## Contact sheets", "", "Real training images (left) beside synthetic ones drawn for the same class (right)"
              + ("; a red frame: the real-trained classifier assigns the sample to another class." if a else "."), ""]
    lines += [f"![{name}]({f})\n" for name, f in r.get("contact_sheets", {}).items()]
    lines += ["## Memorisation", "", "![closest pairs](memorisation.png)\n", "![distances](nn_distances.png)\n"]
    return "\n".join(lines) + "\n"
