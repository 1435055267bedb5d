"""A short model card per run (``model_card.md``): what the model is, the data it learned from, its
metrics with their split, and what it is for and not for.

Written at the end of training (:func:`medaug.train.finalise`, before metrics.json) and by
``medaug export`` beside the exported file (with the export's input, output and check). Built from
the run's result dict (metrics.json's content) and its config alone.
"""

from __future__ import annotations

from pathlib import Path

from .config import dump_toml
from .io_utils import write_text

MARKER = "<!-- medaug model card -->"  #: first line: a file medaug wrote (an export may replace it)
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "kappa", "ece", "study_auroc", "study_kappa")
MASK = ("mask_iou", "pointing", "saliency_auroc")


def _num(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def card_text(result: dict, cfg: dict, rule: str, export: list[str] | None = None) -> str:
    """The card's Markdown. ``result``: a run's metrics.json content; ``cfg``: its [train] table; ``rule``: the
    method's test-time rule in words ('' = the plain classifier); ``export``: lines on an exported file."""
    classes = list(result.get("classes", []))
    size, channels = cfg.get("size"), cfg.get("in_channels", 1)
    n_train, n_valid, n_test = result.get("n_train", "?"), result.get("n_valid", "?"), result.get("n_test", "?")
    stages = result.get("stages") or {}
    epochs = f"{result.get('epochs_run', '?')} epochs (best validation epoch {result.get('best_epoch', '?')})"
    if stages:
        epochs = (f"{stages.get('heated_epochs', '?')} epochs with the method, then {result.get('epochs_run', '?')} epochs "
                  f"fine-tuning without it ({result.get('selection', 'best validation epoch')})")
    elif cfg.get("baseline"):
        epochs += f", starting from the `none` run {cfg['baseline']}"
    shot = f"{cfg['n_shot']} images per class" if cfg.get("n_shot") else "all training images"
    options = ", ".join(f"{k}={v!r}" for k, v in (cfg.get("method_options") or {}).items()) or "no options"
    lines = [MARKER, f"# Model card: {result.get('method', cfg.get('method'))}, seed {result.get('seed', cfg.get('seed'))}", "",
             f"**Intended use: research only.** A {cfg.get('model')} image classifier trained by medaug for studying data "
             f"augmentation. It is not a medical device and must not be used for diagnosis, triage or any clinical "
             f"decision. Trained on {n_train} images at {size} px (gray, resized to {size} x {size}); its numbers below "
             f"hold for held-out images of the same dataset only.", "",
             "## Model", "",
             f"- classifier `{cfg.get('model')}`, {channels} input channel(s), {len(classes)} classes: "
             + ", ".join(f"`{c}`" for c in classes),
             f"- trained with augmentation method `{cfg.get('method')}` ({options}), {shot}, seed {cfg.get('seed')}; {epochs}",
             f"- input: each image decoded as medaug does (RGB to luminance, 16-bit rescaled, DICOM windowed), resized to "
             f"{size} x {size} px (area), quantised to 8 bits, as float in [0, 1]; normalised inside as (x - 0.5) / 0.25",
             "- test-time rule: " + (rule if rule else "none: the plain classifier's softmax"), "",
             "## Data", "",
             f"- `{cfg.get('data')}`, data fingerprint `{result.get('data_fingerprint', '?')}`",
             f"- images: train {n_train}, validation {n_valid}, test {n_test} (validation picked the model by "
             f"`{cfg.get('monitor', 'auroc')}`)", ""]
    test, valid = result.get("test", {}), result.get("valid", {})
    rows = [m for m in METRICS if isinstance(test.get(m), (int, float))]
    if rows:
        lines += ["## Metrics", "", f"| metric | test split (n={test.get('n', n_test)}) | validation split (n={valid.get('n', n_valid)}) |",
                  "|---|---|---|"]
        lines += [f"| {m} | {_num(test[m])} | {_num(valid.get(m, ''))} |" for m in rows]
        mask = {m: v for m, v in (result.get("mask") or {}).items() if m in MASK and isinstance(v, (int, float))}
        if mask:
            lines += [f"| {m} (test masks, {result['mask'].get('n_roi', '?')} images with a lesion) | {_num(v)} | |"
                      for m, v in mask.items()]
        lines.append("")
    lines += ["## Limits", "",
              "- one dataset, one seed: no external validation; other scanners, sites, populations, image sizes or "
              "preprocessing may give other results",
              f"- it sees {size} px gray images: finer detail and colour are lost"]
    for warning in result.get("data_warnings", []):
        lines.append(f"- data warning: {warning}")
    if result.get("collapse"):
        lines.append(f"- the learned masks collapsed during training (metrics.json 'collapse': {result['collapse']})")
    lines.append("")
    if export:
        lines += ["## Export", ""] + [f"- {line}" for line in export] + [""]
    lines += ["## Config", "", "```toml", dump_toml({"train": cfg}).rstrip(), "```", ""]
    return "\n".join(lines)


def write_card(path: str | Path, result: dict, cfg: dict, rule: str, export: list[str] | None = None) -> Path:
    """Write :func:`card_text` to ``path`` (atomically)."""
    write_text(Path(path), card_text(result, cfg, rule, export))
    return Path(path)


def is_card(path: str | Path) -> bool:
    """Whether ``path`` is a model card medaug wrote (its first line is :data:`MARKER`)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().strip() == MARKER
    except (OSError, UnicodeDecodeError):
        return False
