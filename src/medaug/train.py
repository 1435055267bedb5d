"""The one training loop: epochs, AMP, early stopping, best checkpoint, exact resume.

It never branches on a method's name: :class:`medaug.methods.Method` owns what differs.
A run folder holds::

    config.toml      the exact TrainConfig
    checkpoint.pt    everything needed to resume (written atomically after every epoch)
    best.pt          classifier + method state at the best validation epoch (and num_classes)
    log.jsonl        one line per epoch: train losses, validation metrics, time
    metrics.json     written last and atomically: its presence means the run is finished
    predictions.npz  test-set probabilities, labels and study ids (for ROC, calibration, reports)
    model_card.md    data, classes, config, metrics with their split, intended use and its limits
    masks.png        test images with the masks the method keeps, when it has masks
    mask_history.npz masks of fixed validation images after every epoch (watch a policy learn)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import __version__
from .config import TrainConfig, dump_toml
from .context import Context
from .data.cache import (ArraySplit, Dataset, cache_channels, cached, check_cache_root, default_cache_root, fingerprint,
                         is_cache, load_dataset, read_meta)
from .data.duplicates import conflict_message
from .data.index import read_index
from .device import (barrier, check_memory, distributed, init_distributed, place, resolve_device, rng_state, seed_everything,
                     set_rng_state)
from .errors import MedaugError, RunBusy
from .io_utils import (check_output_path, check_replaceable, load_torch, output_folder, provable, recorded, remove_file,
                       remove_output, save_npz, save_torch, write_json, write_text)
from .methods import METHODS, Method, create_method, resolved_options
from .methods.base import KEPT_FRACTION
from .metrics import OPERATING_POINT_DROP, class_report, classification_metrics, mask_metrics, operating_point_drop
from .model_card import write_card
from .models.classifiers import classifier_info, create_classifier
from .progress import console, live_view
from . import tracking
from .provenance import provenance

N_MASK_SNAPSHOTS = 8  # fixed validation images whose masks are saved every epoch
COLLAPSE_BOUNDS, COLLAPSE_EPOCHS = (0.01, 0.99), 3  # a learned mask keeping < 1% or > 99% for 3 epochs has collapsed


def trainable_parameters(model: nn.Module, cfg: TrainConfig) -> list[nn.Parameter]:
    """All parameters, or with ``train_layers='head'`` only the final layer's (the rest frozen)."""
    if cfg.train_layers == "all":
        return list(model.parameters())
    head = model.get_submodule(classifier_info(cfg.model).head)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    return list(head.parameters())


def set_train_mode(model: nn.Module, cfg: TrainConfig) -> None:
    """Training mode; a linear probe keeps the frozen backbone in eval mode (BatchNorm statistics fixed)."""
    if cfg.train_layers == "all":
        model.train()
        return
    model.eval()
    Context.unwrap(model).get_submodule(classifier_info(cfg.model).head).train()


def make_optimizer(params, name: str, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The epoch-wise lr schedule of ``cfg.schedule``: cosine to 0 over the epochs, multistep, or constant."""
    lrs = torch.optim.lr_scheduler
    if cfg.schedule == "cosine":
        return lrs.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.schedule == "multistep":
        return lrs.MultiStepLR(optimizer, milestones=list(cfg.milestones), gamma=cfg.lr_gamma)
    return lrs.LambdaLR(optimizer, lambda e: 1.0)


def batches(n: int, batch_size: int, generator: torch.Generator, rank: int = 0, world: int = 1) -> list[np.ndarray]:
    """Shuffled index batches (this rank's share of each global batch of ``batch_size * world``).

    A trailing batch that would give some rank fewer than two images is dropped (BatchNorm needs two).
    """
    perm = torch.randperm(n, generator=generator).numpy()
    step = batch_size * world
    out = [perm[i : i + step] for i in range(0, n, step)]
    return [b[rank::world] for b in out if len(b) >= 2 * world]


@torch.no_grad()
def predict_probs(method: Method, ctx: Context, split: ArraySplit) -> np.ndarray:
    """Softmax probabilities float64 [N, K] of ``method.predict`` over a split (every process: all of it)."""
    ctx.model.eval()
    out = []
    for i in range(0, len(split), ctx.cfg.eval_batch_size):
        x = ctx.inputs(split.images[i : i + ctx.cfg.eval_batch_size])
        out.append(torch.softmax(method.predict(ctx, x), dim=1).double().cpu())
    return torch.cat(out).numpy()


def predict_masks(method: Method, ctx: Context, images: np.ndarray, soft: bool = False) -> np.ndarray | None:
    """Keep-masks uint8 {0, 1} [N, H, W] of ``method.masks`` (``soft``: float32 ``method.saliency``), or None."""
    ctx.model.eval()
    out = []
    for i in range(0, len(images), ctx.cfg.eval_batch_size):
        x = ctx.inputs(images[i : i + ctx.cfg.eval_batch_size])
        m = method.saliency(ctx, x) if soft else method.masks(ctx, x)
        if m is None:
            return None
        out.append(m[:, 0].float().cpu() if soft else (m[:, 0] > 0.5).to(torch.uint8).cpu())
    return torch.cat(out).numpy()


def split_mask_metrics(method: Method, ctx: Context, split: ArraySplit, keep: np.ndarray | None = None) -> dict | None:
    """Mask metrics (:func:`medaug.metrics.mask_metrics`) of the method's keep-masks and saliency on
    ``split`` against its ROIs; None when the split has no ROIs or the method no masks. ``keep``: the
    split's keep-masks uint8 [N, H, W] when already predicted."""
    if split.rois is None:
        return None
    keep = predict_masks(method, ctx, split.images) if keep is None else keep
    if keep is None:
        return None
    soft = predict_masks(method, ctx, split.images, soft=True)
    return mask_metrics(keep.astype(bool), split.rois.astype(bool), soft)


def snapshot_masks(method: Method, ctx: Context, images: np.ndarray) -> torch.Tensor | None:
    """Masks of fixed images for the mask history: uint8 {0, 1} keep-masks, or float16 soft masks
    ([N, H, W]) for methods without hard masks (PGNM's noise masks); None when the method has neither."""
    hard = predict_masks(method, ctx, images)
    if hard is not None:
        return torch.from_numpy(hard)
    soft = predict_masks(method, ctx, images, soft=True)
    return None if soft is None else torch.from_numpy(soft).half()


def evaluate(method: Method, ctx: Context, split: ArraySplit, studies: bool = True) -> tuple[dict, np.ndarray]:
    probs = predict_probs(method, ctx, split)
    return classification_metrics(split.labels, probs, split.studies if studies else None, ordinal=ctx.cfg.ordinal), probs


def snapshot_indices(split: ArraySplit) -> np.ndarray:
    """Fixed validation images for mask snapshots: those with a finding first."""
    has_roi = split.rois.reshape(len(split), -1).any(1) if split.rois is not None else np.zeros(len(split), bool)
    order = np.concatenate([np.flatnonzero(has_roi), np.flatnonzero(~has_roi)])
    return order[:N_MASK_SNAPSHOTS]


def _score(metrics: dict, monitor: str) -> float:
    """Higher is better; 'loss' is negated; an undefined metric falls back to -loss."""
    if monitor == "loss":
        return -metrics["loss"]
    if monitor not in metrics:
        raise MedaugError(f"config: monitor {monitor!r} is not a metric; use one of {', '.join(k for k in metrics if k != 'warnings')}")
    value = metrics[monitor]
    return -metrics["loss"] if value is None or math.isnan(value) else value


def improves(score: float, loss: float, state: dict) -> bool:
    """An epoch beats the best so far: a higher monitored score, or the same score (a saturated metric, e.g.
    validation AUROC 1.0 from the first epoch on an easy task) with a lower validation loss."""
    best = state["best_score"]
    return score > best or (score == best and loss < state.get("best_loss", math.inf))


def watch_collapse(state: dict, logs: dict, epoch: int) -> str | None:
    """Track the epoch's mean ``kept_fraction`` (the log key methods with learned masks report, see
    :data:`medaug.methods.base.KEPT_FRACTION`); the first time it has stayed outside ``COLLAPSE_BOUNDS``
    for ``COLLAPSE_EPOCHS`` epochs, record ``state['collapse']`` and return the one-line note to print."""
    kept = logs.get(KEPT_FRACTION)
    if kept is None:
        return None
    low, high = COLLAPSE_BOUNDS
    state["collapse_run"] = state.get("collapse_run", 0) + 1 if not low <= kept <= high else 0
    if state["collapse_run"] < COLLAPSE_EPOCHS or "collapse" in state:
        return None
    state["collapse"] = {"epoch": epoch, "kept_fraction": kept, "epochs": COLLAPSE_EPOCHS,
                         "kind": "empty" if kept < low else "full"}
    return (f"mask collapse at epoch {epoch}: the learned masks keep {kept:.4f} of each training image "
            f"({'< ' + format(low, 'g') if kept < low else '> ' + format(high, 'g')} for {COLLAPSE_EPOCHS} epochs); "
            f"its accuracy is that of a collapsed method")


def data_cache(cfg: TrainConfig) -> Path:
    """The decoded cache of a config's data (built once, reused while the sources are unchanged)."""
    return cached(cfg.data, cfg.size, cfg.format, cfg.cache or None, cfg.progress, body_part=cfg.body_part, crop=cfg.crop)


def data_channels(cfg: TrainConfig) -> int:
    """The channel count of a config's data (1 gray, 3 colour), from its cache's meta.json (the cache is
    built when missing)."""
    return cache_channels(read_meta(data_cache(cfg)))


def load_data(cfg: TrainConfig) -> Dataset:
    """The dataset a config asks for: read, cached, split, relabelled (``classes``), k-shot sampled with the run's seed.
    Label conflicts (the same image under two classes) are refused unless ``cfg.allow_label_conflicts``."""
    dataset = load_dataset(
        data_cache(cfg), size=cfg.size, val_fraction=cfg.val_fraction, split_seed=cfg.split_seed,
        n_shot=cfg.n_shot or None, shot_seed=cfg.seed, progress=cfg.progress, split_ratios=cfg.split_ratios,
        classes=cfg.classes,
    )
    conflicts = dataset.info.get("label_conflicts") or []
    source = dataset.info.get("source_classes") or dataset.classes  # conflicts are found among the data's own classes
    if conflicts and not cfg.allow_label_conflicts:
        raise MedaugError(conflict_message(conflicts, source, cfg.data))
    if conflicts:
        dataset.info["warnings"] = [*dataset.info.get("warnings", []), f"{len(conflicts)} label conflict(s) kept "
                                    f"(allow_label_conflicts), e.g. {conflicts[0].describe(source)}"]
    return dataset


def check_batch_memory(cfg: TrainConfig) -> None:
    """Refuse a size and batch size whose input batches alone would not fit in the device's memory (before any work):
    float32 [B, C, S, S] for the larger of batch_size x 2 (originals and augmented copies) and eval_batch_size."""
    images = max(2 * cfg.batch_size, cfg.eval_batch_size)
    check_memory(images * (cfg.in_channels or 3) * cfg.size**2 * 4,  # 0 = the data's: at most 3
                 f"--size {cfg.size} with --batch-size {cfg.batch_size} / --eval-batch-size {cfg.eval_batch_size}: "
                 f"one batch of {images} float32 images of {cfg.in_channels or 3} x {cfg.size} x {cfg.size}",
                 "lower --size or the batch sizes", resolve_device(cfg.device))


def check_splits(dataset: Dataset, data: str) -> None:
    """Refuse a validation or test split holding one class: AUROC, balanced accuracy and the selection on them
    would be meaningless (or undefined) numbers."""
    for name, split in (("validation", dataset.valid), ("test", dataset.test)):
        present = np.unique(split.labels)
        if len(dataset.classes) > 1 and len(present) < 2:
            only = dataset.classes[int(present[0])] if len(present) else "none"
            raise MedaugError(f"{data}: the {name} split has images of one class only ({only!r}, {len(split.labels)} image(s)); "
                              "AUROC and balanced accuracy would be meaningless. Add images of the other class(es) to it "
                              "(where medaug makes the split: another --split-seed, a larger --val-fraction or other --split-ratios)")


def warn_data(dataset: Dataset, out: Path) -> None:
    """Print the dataset's warnings (e.g. test images identical to training images) on stderr, once per run."""
    if dataset.info.get("warnings") and distributed()[0] == 0:
        from rich.console import Console
        from rich.markup import escape

        for w in dataset.info["warnings"]:
            Console(stderr=True, emoji=False).print(f"[yellow]warning:[/] {escape(w)} (run {escape(str(out))})", highlight=False)


def finetune_epochs(cfg: TrainConfig) -> int:
    """Epochs of stage 2 for ``cfg``: its own value; when it is -1, the method's default: under budget equal its
    share of the budget (``finetune_fraction``: pgnm 2/3, 20 of 30 epochs, at least 1, at most epochs - 1),
    else its fixed count (``finetune_epochs``: pgnm 10)."""
    if cfg.finetune_epochs >= 0:
        return cfg.finetune_epochs
    method = METHODS.get(cfg.method)
    if cfg.budget == "equal" and method.finetune_fraction:
        return max(1, min(cfg.epochs - 1, round(method.finetune_fraction * cfg.epochs)))
    return method.finetune_epochs


def finetune_lr(cfg: TrainConfig) -> float:
    """Learning rate of the fine-tuning stage: ``finetune_lr`` when set; else the run's lr where the stage is the
    method's share of an equal budget (``finetune_epochs = -1``), lr / 10 otherwise (the papers' stage)."""
    if cfg.finetune_lr:
        return cfg.finetune_lr
    share = cfg.budget == "equal" and cfg.finetune_epochs < 0 and METHODS.get(cfg.method).finetune_fraction
    return cfg.lr if share else cfg.lr / 10


def stage_plan(cfg: TrainConfig) -> dict:
    """The stages a run of ``cfg`` trains, as its metrics.json records them (``stages``); {} for one stage."""
    if METHODS.get(cfg.method).needs_baseline and cfg.budget == "equal":
        first = baseline_epochs(cfg)
        return {"baseline_epochs": first, "method_epochs": cfg.epochs - first}
    stage2 = finetune_epochs(cfg)
    if not stage2:
        return {}
    return {"heated_epochs": cfg.epochs - stage2 if cfg.budget == "equal" else cfg.epochs, "finetune_epochs": stage2,
            "finetune_lr": finetune_lr(cfg)}


def check_stages(out: Path, metrics: dict, cfg: TrainConfig) -> None:
    """A finished run whose recorded stages differ from what ``cfg`` trains today (a default of the stages changed:
    the branch point of two-stage methods, pgnm's fine-tuning share) is refused in one line, never reused."""
    have, want = metrics.get("stages") or {}, stage_plan(cfg)
    diff = [k for k in want if k in have and not math.isclose(float(have[k]), float(want[k]), rel_tol=1e-9)]
    if diff:
        shown = "; ".join(f"{k} {have[k]} there, {want[k]} now" for k in diff)
        raise MedaugError(f"{out}: a finished run trained with other stages ({shown}: medaug's defaults for them changed, "
                          "docs/experiments.md); train it again (--overwrite, or delete the folder), or set "
                          "baseline_epochs / finetune_epochs / finetune_lr to the values it was trained with")


BRANCH = "branch.pt"  #: a baseline run's best checkpoint of its first baseline_epochs epochs (budget equal)


BRANCH_FRACTION = 0.8  #: default none stage of a two-stage run: 4/5 of ``epochs`` (chosen on two datasets' validation splits, docs/apga.md)


def baseline_epochs(cfg: TrainConfig) -> int:
    """Budget equal: epochs of the ``none`` stage a two-stage method starts from. Default (``baseline_epochs = -1``):
    4/5 of ``epochs`` rounded up, leaving the method at least one epoch (24 of 30, 12 of 15, 16 of 20)."""
    if cfg.baseline_epochs >= 0:
        return cfg.baseline_epochs
    return max(1, min(cfg.epochs - 1, math.ceil(BRANCH_FRACTION * cfg.epochs - 1e-9)))


def start_method(cfg: TrainConfig) -> str:
    """The one-stage method under ``cfg``'s (``none``; ``classical`` when stacked on it): the run a two-stage run
    starts from, and the method of a staged run's fine-tuning stage."""
    return METHODS.get(cfg.method).builds_on(cfg.method_options)


def baseline_checkpoint(cfg: TrainConfig) -> Path:
    """The checkpoint a run with ``cfg.baseline`` starts from: a two-stage method under budget equal takes the
    baseline's ``branch.pt`` (checked to end its first stage where this run's budget says), else ``best.pt``.
    The baseline must be a run of :func:`start_method` (its config.toml says), else one line naming both."""
    base, want_method = Path(cfg.baseline), start_method(cfg)
    if not (base / "best.pt").is_file():
        raise MedaugError(f"--baseline {cfg.baseline}: no best.pt; train the `{want_method}` baseline there first")
    if METHODS.get(cfg.method).needs_baseline and (base / "config.toml").is_file():
        have = read_toml(base / "config.toml").get("train", {}).get("method", "none")
        if have != want_method:
            raise MedaugError(f"--baseline {cfg.baseline}: a `{have}` run, but {cfg.method} with these options starts "
                              f"from a `{want_method}` run; pass one (`medaug run` trains and passes it for you)")
    if cfg.budget != "equal" or not METHODS.get(cfg.method).needs_baseline:
        return base / "best.pt"
    branch, want = base / BRANCH, baseline_epochs(cfg)
    if not branch.is_file():
        raise MedaugError(f"--baseline {cfg.baseline}: no {BRANCH} (the best checkpoint of its first {want} epochs, which "
                          f"`none` and `classical` runs of this medaug save under --budget equal; this one was trained "
                          f"before or under --budget paper): train it again (--overwrite), or pass --budget paper to "
                          f"fine-tune from its final best.pt")
    return branch


def check_branch(cfg: TrainConfig, ckpt: dict, epochs: int) -> None:
    """The baseline's branch checkpoint ``ckpt`` ends the first stage at this two-stage run's
    ``baseline_epochs`` of a budget of ``epochs``; else one line naming both budgets."""
    have = (ckpt.get("branch_epoch"), ckpt.get("epochs"))
    if have != (baseline_epochs(cfg), epochs):
        raise MedaugError(f"--baseline {cfg.baseline}: its first stage ends at epoch {have[0]} of {have[1]}; this run needs "
                          f"epoch {baseline_epochs(cfg)} of {epochs} (--epochs, --baseline-epochs); train the baseline with "
                          "the same budget, or pass --budget paper to fine-tune from its final best.pt")


def check_budget(cfg: TrainConfig) -> None:
    """Under budget equal both stages of a staged run get at least one epoch of ``epochs``; else one line."""
    if cfg.budget != "equal":
        return
    first, what, flag = ((baseline_epochs(cfg), "the none stage (baseline_epochs)", "--baseline-epochs")
                         if METHODS.get(cfg.method).needs_baseline else
                         (finetune_epochs(cfg), "the fine-tuning stage (finetune_epochs)", "--finetune-epochs"))
    if first and first >= cfg.epochs:
        raise MedaugError(f"config: {what} takes {first} of the budget of {cfg.epochs} epochs, leaving none for "
                          f"{cfg.method}'s own stage; give --epochs > {first} or a smaller {flag} (budget equal)")


def classifier_epochs(cfg: TrainConfig, baseline_total: int = 0) -> int:
    """The budget of a run: epochs its classifier trains from initialisation, every stage counted (planned,
    before early stopping). ``baseline_total``: the baseline run's own budget (two-stage methods, budget paper)."""
    if cfg.budget == "equal":
        return cfg.epochs
    return cfg.epochs + finetune_epochs(cfg) + (baseline_total if METHODS.get(cfg.method).needs_baseline else 0)


def fit(cfg: TrainConfig, out_dir: str | Path, dataset: Dataset | None = None, tracker=None, overwrite: bool = False) -> dict:
    """Train, select, test. Returns the metrics dict (also written to ``out_dir/metrics.json``).

    A finished run (metrics.json present) is returned as is; an interrupted one resumes from
    ``checkpoint.pt`` and ends with the same metrics as an uninterrupted run on the same device.
    Both only when the folder's config.toml and data fingerprint are this run's (:func:`run_identity`);
    another configuration's results are refused, never reused (``overwrite``: start fresh).
    ``in_channels = 0`` is resolved first to the data's channel count (1 gray, 3 colour), and the run
    is recorded with that value, so a gray run written as ``in_channels = 1`` is this configuration.
    A run that fails before its first checkpoint leaves no folder behind.
    ``tracker``: optional MLflow/TensorBoard-like object (see :mod:`medaug.tracking`; $MEDAUG_TRACK otherwise).

    With a fine-tuning stage (``finetune_epochs``, PGNM's "heated" model), stage 1 trains with the
    method in ``out_dir/heated/`` (a complete run of its own), then stage 2 fine-tunes its best
    classifier in ``out_dir`` with no method, at ``finetune_lr`` (default lr / 10), and ends with
    the mean of the last ``average_last`` epochs' weights. The test metrics are stage 2's.
    """
    out = Path(out_dir)
    create_method(cfg.method, cfg.method_options)  # validate names before any work
    check_output_path(out, "--out", data_inputs(cfg))  # before the lock, which writes in the cache
    check_cache_root(data_inputs(cfg))
    check_batch_memory(cfg)
    finished = not overwrite and (out / "metrics.json").is_file()  # read only: no lock, no write
    with run_lock(out) if distributed()[0] == 0 and not finished else contextlib.nullcontext():
        return _fit_run(cfg, out, dataset, tracker, overwrite)


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold run folder ``out`` for this process: a second process on the same folder (two terminals, two
    ``medaug run`` of one plan) gets :class:`RunBusy` instead of training beside it. The lock is an OS file
    lock on ``$MEDAUG_CACHE/locks/run-<hash of the folder's real path>.lock`` (not in the folder), so a
    killed process leaves nothing to clean up."""
    from filelock import FileLock, Timeout

    key = hashlib.sha256(os.path.realpath(out).encode()).hexdigest()[:16]
    path = default_cache_root() / "locks" / f"run-{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunBusy(f"{out}: another medaug process is training this run now; let it finish (or stop it), "
                      f"then run again") from None
    try:
        yield
    finally:
        lock.release()


def run_busy(out: Path) -> bool:
    """Whether another process holds run folder ``out`` (:func:`run_lock`) now; takes and drops the lock."""
    try:
        with run_lock(out):
            return False
    except RunBusy:
        return True


def _fit_run(cfg: TrainConfig, out: Path, dataset: Dataset | None, tracker, overwrite: bool) -> dict:
    """:func:`fit` once the folder is this process's."""
    if distributed()[0] == 0:  # one process claims and writes the folder
        output_folder(out, "run", inputs=data_inputs(cfg), overwrite=overwrite)
        if overwrite:
            left_behind(out, ("metrics.json", "checkpoint.pt", "heated/metrics.json", "heated/checkpoint.pt"))
    try:
        fp, channels = None, cfg.in_channels
        if dataset is not None:
            fp, channels = dataset.fingerprint, dataset.channels
        elif _has_results(out):
            fp = data_fingerprint(cfg)
            channels = cfg.in_channels or data_channels(cfg)
        elif not cfg.in_channels:
            dataset = load_data(cfg)
            fp, channels = dataset.fingerprint, dataset.channels
        if not cfg.in_channels:  # "the data's", resolved once: the run records 1 or 3
            cfg = dataclasses.replace(cfg, in_channels=channels)
        check_budget(cfg)
        equal = cfg.budget == "equal"
        budget = {"budget": {"mode": cfg.budget, "classifier_epochs": classifier_epochs(cfg, _baseline_budget(cfg))}}
        if METHODS.get(cfg.method).needs_baseline and equal:  # the none stage counts: train the rest of the budget
            stages = stage_plan(cfg)  # what check_stages compares a finished run with
            stage = dataclasses.replace(cfg, epochs=stages["method_epochs"], baseline_epochs=stages["baseline_epochs"])
            extra = {**budget, "stages": stages}
            return _fit(stage, out, dataset, tracker, record=cfg, extra=extra, fingerprint=fp)
        stage2 = finetune_epochs(cfg) if not (out / "metrics.json").is_file() else 0
        if stage2 == 0:
            return _fit(cfg, out, dataset, tracker, fingerprint=fp, extra=budget)
        stages = stage_plan(cfg)  # heated_epochs, finetune_epochs (= stage2), finetune_lr
        stage1 = dataclasses.replace(cfg, finetune_epochs=0, epochs=stages["heated_epochs"])
        if dataset is None:
            dataset = load_data(cfg)
        heated = _fit(stage1, out / "heated", dataset, tracker, stage="heated", fingerprint=dataset.fingerprint)
        tune = dataclasses.replace(cfg, method=start_method(cfg), method_options={}, epochs=stage2, lr=stages["finetune_lr"],
                                   finetune_lr=0.0, baseline=str(out / "heated"), finetune_epochs=0)
        extra = {**budget, "stages": {**stages, "average_last": cfg.average_last, "heated_wall_s": heated["wall_s"]},
                 "heated": {"test": heated["test"], "best_epoch": heated["best_epoch"]}}
        return _fit(tune, out, dataset, tracker, record=cfg, average_last=cfg.average_last, extra=extra,
                    fingerprint=dataset.fingerprint)
    except BaseException:
        if distributed()[0] == 0 and not _has_results(out):
            remove_output(out)  # nothing to resume: no half-written folder
        raise


def _baseline_budget(cfg: TrainConfig) -> int:
    """The budget (classifier epochs) of the baseline run a two-stage run starts from, from its metrics.json
    (0 when it has none: a run that is not two-stage, or a baseline of an older medaug)."""
    if not (cfg.baseline and METHODS.get(cfg.method).needs_baseline and (Path(cfg.baseline) / "metrics.json").is_file()):
        return 0
    saved = read_json(Path(cfg.baseline) / "metrics.json", "the baseline's")
    return int((saved.get("budget") or {}).get("classifier_epochs") or saved.get("epochs_run") or 0)


def left_behind(folder: Path, names: tuple[str, ...]) -> None:
    """After ``--overwrite``: refuse when results remain that medaug could not delete (not provably its own)."""
    left = [n for n in names if (folder / n).is_file()]
    if left:
        raise MedaugError(f"{folder}: --overwrite left {', '.join(left)}, which medaug cannot prove it wrote (an older "
                          "medaug's, or changed since); delete them yourself to start fresh, or choose another --out")


def _has_results(out: Path) -> bool:
    """A checkpoint or metrics.json in ``out`` or its stage folders (something to resume or reuse)."""
    return any((d / name).is_file() for d in (out, out / "heated") for name in ("checkpoint.pt", "metrics.json"))


def data_inputs(cfg: TrainConfig) -> tuple[str, ...]:
    """The folder a run reads, a dataset or a prepared cache (its outputs may not lie inside it); none for a file."""
    data = Path(cfg.data)
    return () if not cfg.data or not data.is_dir() else (cfg.data,)


#: saved configs that lack a field were written before it existed, under this rule
LEGACY_DEFAULTS = {"budget": "paper"}
#: TrainConfig fields that do not change a run's results (where it runs and how it reports)
NOT_IDENTITY = ("progress", "cache", "device", "eval_batch_size", "allow_label_conflicts")
PATH_FIELDS = ("data", "baseline", "pretrained")


def run_identity(cfg: TrainConfig | dict, fingerprint: str | None, out: Path | None = None) -> dict:
    """What makes a run folder this configuration's: its TrainConfig (paths resolved) and the data fingerprint.
    With ``out`` (the run folder), ``baseline`` counts as the path from there, so a whole experiment folder can be
    moved or renamed and its runs still resume (a two-stage run's `none` run is its sibling wherever they lie).

    A field missing from a saved config (written before the field existed) counts as its default, which
    keeps the older behaviour (``budget``: 'paper', the rule of the medaug that wrote it); method options
    count with the method's defaults filled in, so spelling a default out (``-o variant=apga``) is the same
    configuration as leaving it out. ``budget`` and ``baseline_epochs`` count only for runs they change
    (two-stage methods, runs with a fine-tuning stage).
    """
    legacy = LEGACY_DEFAULTS if isinstance(cfg, dict) else {}
    values = {**TrainConfig.field_defaults(), **legacy, **(cfg if isinstance(cfg, dict) else cfg.to_dict())}
    values["method_options"] = resolved_options(values["method"], values.get("method_options") or {})
    method = METHODS.get(values["method"])
    staged = method.needs_baseline or (values["finetune_epochs"] if values["finetune_epochs"] >= 0 else method.finetune_epochs) > 0
    for key in ("budget", "baseline_epochs"):
        if not staged or (key == "baseline_epochs" and (values["budget"] == "paper" or not method.needs_baseline)):
            values.pop(key)
    values = tomllib.loads(dump_toml(values))  # TOML round trip: like with like
    for key in NOT_IDENTITY:
        values.pop(key, None)
    for key in PATH_FIELDS:
        if values.get(key):
            values[key] = str(Path(values[key]).expanduser().resolve())
    if out is not None and values.get("baseline"):
        values["baseline"] = os.path.relpath(values["baseline"], Path(out).resolve())
    values["data_fingerprint"] = fingerprint
    return values


def stored_identity(out: Path, stored: dict, fingerprint: bool = True) -> dict:
    """An identity medaug stored (metrics.json, checkpoint.pt) for run folder ``out``, normalised as
    ``run_identity(cfg, fingerprint, out)`` is: its ``baseline`` is relative to ``out`` (an older medaug stored it
    absolute, which still compares equal while the folders have not moved)."""
    values = {k: v for k, v in stored.items() if k != "data_fingerprint"}
    if values.get("baseline") and not Path(values["baseline"]).is_absolute():
        values["baseline"] = os.path.join(Path(out).resolve(), values["baseline"])
    return run_identity(values, stored.get("data_fingerprint") if fingerprint else None, out)


def check_identity(out: Path, saved: dict, current: dict, what: str, fix: str = "--overwrite to start fresh") -> None:
    """One line naming the keys where a folder's saved identity differs from this run's."""
    diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if diff:
        shown = "; ".join(f"{k}: {saved.get(k)!r} there, {current.get(k)!r} now" for k in diff[:4])
        more = f" (and {len(diff) - 4} more)" if len(diff) > 4 else ""
        raise MedaugError(f"{out}: holds {what} of another configuration ({shown}{more}); use another --out, or {fix}")


def data_fingerprint(cfg: TrainConfig) -> str:
    """The fingerprint a run's dataset has now (from the sources' index; no decoding, no cache built)."""
    data = Path(cfg.data)
    if is_cache(data):
        return read_json(data / "meta.json", "the cache's").get("fingerprint", "")
    index = read_index(data, cfg.format, **({"body_part": cfg.body_part} if cfg.body_part != "all" else {}),
                       **({"crop": cfg.crop} if cfg.crop != "none" else {}))
    return fingerprint(index, cfg.size)[0]


def model_state(run_dir: str | Path, device: torch.device | str = "cpu") -> dict:
    """The selected classifier weights of a finished or running run folder (its best.pt)."""
    path = Path(run_dir) / "best.pt"
    if not path.is_file():
        raise MedaugError(f"{run_dir}: no best.pt; train a model there first (`medaug train --out {run_dir}`)")
    return classifier_checkpoint(path, device)["model"]


def classifier_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """A medaug checkpoint holding classifier weights (best.pt, branch.pt), or one line naming the file."""
    ckpt = load_checkpoint(path, device)
    if not isinstance(ckpt.get("model"), dict):
        raise MedaugError(f"{path}: holds no classifier weights ('model'); train a model there again")
    return ckpt


def average_weights(states: list[dict]) -> dict:
    """Element-wise mean of state dicts (floating tensors); integer buffers (BatchNorm counters) from the last."""
    out = {}
    for key, last in states[-1].items():
        out[key] = torch.stack([s[key] for s in states]).mean(0) if last.is_floating_point() else last.clone()
    return out


@dataclass
class Stage:
    """One stage of a run as :func:`start_stage` builds it; the epoch, selection and final steps share it."""

    cfg: TrainConfig
    out: Path
    record: TrainConfig  #: the config saved and reported (the staged run's own in stage 2)
    dataset: Dataset
    method: Method
    ctx: Context
    model: nn.Module  #: the bare classifier (``ctx.model`` wraps it under torchrun)
    scheduler: torch.optim.lr_scheduler.LRScheduler
    identity: dict  #: :func:`run_identity` of this stage, saved in every checkpoint
    track: Any  #: the tracking hook (:mod:`medaug.tracking`)
    snap_idx: np.ndarray  #: the fixed validation images of the mask history
    state: dict  #: the loop's progress: epoch, history, best_score, best_epoch, bad_epochs, snapshots (checkpointed)
    average_last: int = 0
    start: float = 0.0  #: wall-clock start (time.time())
    branch_at: int = 0  #: a baseline run under budget equal: the epoch after which it saves branch.pt (0 = never)

    @property
    def lead(self) -> bool:
        """Only the first process writes files."""
        return self.ctx.rank == 0


def _fit(cfg: TrainConfig, out: Path, dataset: Dataset | None, tracker, *, record: TrainConfig | None = None,
         average_last: int = 0, stage: str = "", extra: dict | None = None, fingerprint: str | None = None) -> dict:
    """One stage: reuse it when finished, else set up, resume, train epoch by epoch, select and test.
    ``record``: the config to save and report (stage 2 of a staged run)."""
    record = record or cfg
    saved = finished_result(cfg, out, record, fingerprint)
    if saved is not None:
        return saved
    run = start_stage(cfg, out, dataset, tracker, record, average_last)
    resume(run)
    train_epochs(run)
    return finalise(run, load_selected(run), stage, extra)


def finished_result(cfg: TrainConfig, out: Path, record: TrainConfig, fingerprint: str | None) -> dict | None:
    """The metrics.json of a finished stage in ``out``, or None; one of another configuration is refused."""
    done = out / "metrics.json"
    if not done.is_file():
        return None
    saved = read_json(done, "the run's")
    check_identity(out, saved_identity(out, saved), run_identity(record, fingerprint or data_fingerprint(cfg), out),
                   "a finished run")
    check_stages(out, saved, record)
    return saved


def saved_identity(out: Path, metrics: dict, fingerprint: bool = True) -> dict:
    """The identity a finished run was trained with: the one medaug stored in its metrics.json; for a run of an
    older medaug, its config.toml (refused when medaug recorded its fingerprint and the file changed since).
    ``fingerprint=False``: without the data fingerprint (compared before the data is read)."""
    stored = metrics.get("identity")
    if isinstance(stored, dict):
        return stored_identity(out, stored, fingerprint)
    config = out / "config.toml"
    if recorded(config) and not provable(config):
        raise MedaugError(f"{config}: changed since medaug wrote it, so it no longer says how the finished run was "
                          "trained; restore it, or use --overwrite to train the run again")
    return run_identity(read_toml(config).get("train", {}), metrics.get("data_fingerprint") if fingerprint else None, out)


def start_stage(cfg: TrainConfig, out: Path, dataset: Dataset | None, tracker, record: TrainConfig, average_last: int) -> Stage:
    """Everything a stage needs, seeded: the method, the data, the folder's config.toml, the tracker, the
    classifier (:func:`build_classifier`) with its optimizer and schedule, the Context and the method's setup."""
    start = time.time()
    method = create_method(cfg.method, cfg.method_options)  # validate names before any work
    if method.needs_baseline and not cfg.baseline:
        raise MedaugError(
            f"method {cfg.method!r} starts from a trained `{start_method(cfg)}` model: pass --baseline RUN_DIR "
            "(`medaug run` and `medaug demo` train and pass it for you)"
        )
    seed_everything(cfg.seed)
    if dataset is None:
        dataset = load_data(cfg)
    check_splits(dataset, cfg.data)
    warn_data(dataset, out)
    identity = run_identity(record, dataset.fingerprint, out)
    device = resolve_device(cfg.device)
    rank, world = distributed()
    init_distributed(device)
    if rank == 0:
        output_folder(out, "run")
        # method options as they run (defaults and presets filled in): a later change of a default is then
        # a different configuration for this folder, not a silent reuse of its results
        saved = {**record.to_dict(), "method_options": resolved_options(record.method, record.method_options)}
        write_text(out / "config.toml", dump_toml({"train": saved}))
    track = tracking.hook(cfg, out, tracker, enabled=rank == 0)
    track.start(cfg.to_dict())
    model, lr = build_classifier(cfg, len(dataset.classes), device)
    optimizer = make_optimizer(trainable_parameters(model, cfg), cfg.optimizer, lr, cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16" and device.type == "cuda")
    ctx = Context(model, optimizer, device, cfg, len(dataset.classes), scaler,
                  extras={"baseline": cfg.baseline, "classes": dataset.classes, "train_images": dataset.train.images},
                  rank=rank, world=world, channels=dataset.channels)
    ctx.model = ctx.wrap(model)
    method.setup(ctx)
    state = dict(epoch=0, history=[], best_score=-math.inf, best_epoch=-1, bad_epochs=0, snapshots=[])
    branch_at = baseline_epochs(cfg) if method.is_baseline and cfg.budget == "equal" and record is cfg else 0
    return Stage(cfg, out, record, dataset, method, ctx, model, scheduler, identity, track,
                 snapshot_indices(dataset.valid), state, average_last, start, min(branch_at, cfg.epochs))


def build_classifier(cfg: TrainConfig, num_classes: int, device: torch.device) -> tuple[nn.Module, float]:
    """The classifier (seeded) on the device, with the weights of ``cfg.baseline``'s best.pt when set, and its lr."""
    torch.manual_seed(cfg.seed)
    model = place(create_classifier(cfg.model, cfg.in_channels, num_classes, cfg.pretrained or None), device,
                  cfg.channels_last)
    if not cfg.baseline:
        return model, cfg.lr
    path = baseline_checkpoint(cfg)
    ckpt = classifier_checkpoint(path, device)
    if path.name == BRANCH:
        check_branch(cfg, ckpt, cfg.epochs + baseline_epochs(cfg))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:  # another model or class count
        lines = str(exc).splitlines()
        raise MedaugError(f"--baseline {cfg.baseline}: its classifier does not fit this run ({cfg.model}, "
                          f"{num_classes} classes): {lines[1 if len(lines) > 1 else 0].strip()[:120]}; "
                          "train the `none` baseline on the same data and model") from None
    return model, cfg.finetune_lr or cfg.lr


def resume(run: Stage) -> None:
    """Continue from the folder's checkpoint.pt when there is one: classifier, optimizer, schedule, loss
    scaler, method, RNG streams and loop state; a checkpoint of another configuration is refused."""
    ctx, path = run.ctx, run.out / "checkpoint.pt"
    if path.is_file():
        ckpt = load_checkpoint(path, ctx.device)
        if not isinstance(ckpt.get("identity"), dict):
            raise MedaugError(f"{path}: no record of the configuration that wrote it (not medaug's, or an older medaug); "
                              "--overwrite to start fresh")
        # normalised as a saved config is: a field added since the checkpoint was written counts as its default
        check_identity(run.out, stored_identity(run.out, ckpt["identity"]), run.identity, "a checkpoint")
        try:
            run.model.load_state_dict(ckpt["model"])  # the bare network; ctx.model may wrap it
            ctx.optimizer.load_state_dict(ckpt["optimizer"])
            run.scheduler.load_state_dict(ckpt["scheduler"])
            ctx.scaler.load_state_dict(ckpt["scaler"])
            run.method.load_state_dict(ckpt["method"])
            set_rng_state(ckpt["rng"])
            run.state = ckpt["state"]
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise MedaugError(f"{path}: does not fit this run ({exc.__class__.__name__}: {str(exc)[:120]}); "
                              "--overwrite to start fresh") from None
    if ctx.rank == 0:  # files every epoch rewrites: medaug's own, checked before any training
        check_replaceable(*(run.out / name for name in ("checkpoint.pt", "best.pt", "log.jsonl")))
    if ctx.world > 1:
        torch.manual_seed(run.cfg.seed * 1000 + ctx.rank + 1000 * run.state["epoch"])  # different augmentations per process


def train_epochs(run: Stage) -> None:
    """Epochs until ``cfg.epochs`` or early stopping (``patience`` epochs without a better validation score)."""
    cfg, state = run.cfg, run.state
    if run.method.needs_baseline and state["epoch"] == 0 and "start" not in state:
        score_start(run)
    with live_view(cfg.progress) as bar:
        task = bar.add_task(f"{cfg.method} seed {cfg.seed}", total=cfg.epochs, completed=state["epoch"], status="")
        while state["epoch"] < cfg.epochs and not (cfg.patience and state["bad_epochs"] >= cfg.patience):
            t0 = time.time()
            logs = train_one_epoch(run)
            val = validate_and_select(run, logs)
            row = {"epoch": state["epoch"] + 1, "lr": run.ctx.optimizer.param_groups[0]["lr"], "time_s": round(time.time() - t0, 3),
                   **{f"train_{k}": v for k, v in logs.items()},
                   **{f"val_{k}": v for k, v in val.items() if k != "warnings"}}
            checkpoint(run, row)
            bar.update(task, advance=1, status=f"loss {logs.get('loss', float('nan')):.3f} val {cfg.monitor} {val.get(cfg.monitor, float('nan')):.3f}")
        bar.remove_task(task)


PLAIN = Method()  #: the plain classifier's prediction rule (a two-stage run that kept its starting checkpoint)


def score_start(run: Stage) -> None:
    """Do no harm: score a two-stage run's starting checkpoint (the baseline, with its own plain prediction
    rule) on validation as epoch 0 and make it the best so far, so the run keeps it unless an epoch of the
    method beats it (``state['start']``; best.pt then holds it with ``'start': True``)."""
    val, _ = evaluate(PLAIN, run.ctx, run.dataset.valid, studies=False)
    score = _score(val, run.cfg.monitor)
    run.state.update(best_score=score, best_loss=val["loss"], best_epoch=-1,
                     start={"valid": {k: v for k, v in val.items() if k != "warnings"}})
    if run.lead:
        save_torch(run.out / "best.pt", {"model": run.model.state_dict(), "method": run.method.state_dict(), "epoch": -1,
                                         "start": True, "num_classes": run.ctx.num_classes})


def save_branch(run: Stage) -> None:
    """A baseline run's best checkpoint so far, saved as branch.pt with the epoch its ``none`` stage ends at."""
    best = load_checkpoint(run.out / "best.pt", run.ctx.device)
    save_torch(run.out / BRANCH, {**best, "branch_epoch": baseline_epochs(run.cfg), "epochs": run.cfg.epochs})


def train_one_epoch(run: Stage) -> dict[str, float]:
    """One pass over this process's share of the epoch's shuffled batches, then the lr schedule and the
    method's epoch end. Returns each log's mean over batches and processes; a NaN/inf log is an error."""
    cfg, ctx, method, train = run.cfg, run.ctx, run.method, run.dataset.train
    epoch = run.state["epoch"]
    set_train_mode(ctx.model, cfg)
    sums: dict[str, torch.Tensor] = {}
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    order = batches(len(train), cfg.batch_size, gen, ctx.rank, ctx.world)
    if not order:
        raise MedaugError(f"{cfg.data}: the train split has {len(train)} image(s), too few for one batch of 2 per "
                          f"process (--batch-size {cfg.batch_size}, {ctx.world} process(es)); add training images")
    for idx in order:
        x, y = ctx.inputs(train.images[idx]), torch.from_numpy(train.labels[idx]).to(ctx.device)
        for k, v in method.train_step(ctx, x, y).items():
            sums[k] = sums.get(k, 0.0) + v.float()
    run.scheduler.step()
    method.epoch_end(ctx)
    logs = {k: float(ctx.all_mean(v)) / max(len(order), 1) for k, v in sums.items()}  # one host sync per epoch
    bad = [k for k, v in logs.items() if not math.isfinite(v)]
    if bad:
        raise MedaugError(
            f"{run.out}: {', '.join(bad)} became NaN/inf in epoch {epoch + 1}; lower --lr, use --precision fp32, "
            "or check the data for constant images"
        )
    return logs


def validate_and_select(run: Stage, logs: dict[str, float]) -> dict:
    """After an epoch: watch the masks for collapse, score the validation split (``cfg.monitor``), keep
    best.pt when the score beats the best so far, snapshot the fixed images' masks. Returns the metrics."""
    state, epoch = run.state, run.state["epoch"]
    note = watch_collapse(state, logs, epoch + 1)
    if note and run.lead:
        console.print(f"{run.out}: {note}", highlight=False, soft_wrap=True)
    val, _ = evaluate(run.method, run.ctx, run.dataset.valid, studies=False)
    score = _score(val, run.cfg.monitor)
    if improves(score, val["loss"], state):
        state.update(best_score=score, best_loss=val["loss"], best_epoch=epoch, bad_epochs=0)
        if run.lead:
            save_torch(run.out / "best.pt", {"model": run.model.state_dict(), "method": run.method.state_dict(), "epoch": epoch,
                                             "num_classes": run.ctx.num_classes})
    else:
        state["bad_epochs"] += 1
    snap = snapshot_masks(run.method, run.ctx, run.dataset.valid.images[run.snap_idx])
    if snap is not None:
        state["snapshots"].append(snap)
    return val


def checkpoint(run: Stage, row: dict) -> None:
    """Close an epoch: its row in the history; the lead keeps the last ``average_last`` epochs' weights,
    writes checkpoint.pt (all that :func:`resume` needs) and log.jsonl, and gives the row to the tracker."""
    state, out = run.state, run.out
    state["history"].append(row)
    state["epoch"] = row["epoch"]
    if not run.lead:
        return
    if run.average_last:
        save_torch(out / "last" / f"epoch-{row['epoch']:04d}.pt", {"model": run.model.state_dict(), "epoch": row["epoch"] - 1})
        for old in sorted((out / "last").glob("epoch-*.pt"))[:-run.average_last]:
            remove_file(old)
    if run.branch_at == row["epoch"]:
        save_branch(run)  # before checkpoint.pt: a run resumed after this epoch has it
    ctx = run.ctx
    save_torch(out / "checkpoint.pt", {
        "model": run.model.state_dict(), "optimizer": ctx.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
        "scaler": ctx.scaler.state_dict(), "method": run.method.state_dict(), "rng": rng_state(), "state": state,
        "identity": run.identity,
    })
    write_text(out / "log.jsonl", "".join(_json_line(r) for r in state["history"]))
    run.track.epoch(row)


def load_selected(run: Stage) -> list[str]:
    """Load the selected model into the classifier and method: best.pt, or with ``average_last`` the mean
    of the last epochs' weights (written as best.pt first). Returns the averaged files' names, else []."""
    out, device = run.out, run.ctx.device
    barrier()  # best.pt is written by the first process
    files = []
    if run.average_last:
        files = sorted((out / "last").glob("epoch-*.pt"))[-run.average_last:]
        states = [load_checkpoint(f, device)["model"] for f in files]
        if run.lead:
            save_torch(out / "best.pt", {"model": average_weights(states), "method": run.method.state_dict(),
                                         "epoch": run.state["epoch"] - 1, "averaged": [f.name for f in files],
                                         "num_classes": run.ctx.num_classes})
        barrier()
    best = load_checkpoint(out / "best.pt", device)
    run.model.load_state_dict(best["model"])
    if best.get("start"):  # the kept starting classifier; the method keeps its last state (what it learned: its masks)
        if run.lead:
            save_torch(out / "best.pt", {**best, "method": run.method.state_dict()})
        barrier()
    else:
        run.method.load_state_dict(best["method"])
    return [f.name for f in files]


def finalise(run: Stage, averaged: list[str], stage: str, extra: dict | None) -> dict:
    """Validation and test metrics of the selected model (and its test masks against the findings): the
    result dict; the lead writes predictions, figures and, last, metrics.json."""
    cfg, dataset, method, ctx, state = run.cfg, run.dataset, run.method, run.ctx, run.state
    kept_start = "start" in state and state["best_epoch"] < 0
    rule = PLAIN if kept_start else method  # the kept baseline predicts as the baseline did
    valid_metrics, valid_probs = evaluate(rule, ctx, dataset.valid)
    test_metrics, test_probs = evaluate(rule, ctx, dataset.test)
    valid_metrics.update(class_report(dataset.valid.labels, valid_probs, dataset.classes))
    test_metrics.update(class_report(dataset.test.labels, test_probs, dataset.classes))
    result = {
        "method": run.record.label or run.record.method, **({"base_method": run.record.method} if run.record.label else {}),
        "seed": cfg.seed, "n_shot": cfg.n_shot, "model": cfg.model,
        "classes": dataset.classes, **{k: dataset.info[k] for k in ("class_map", "dropped_images") if k in dataset.info},
        "n_train": len(dataset.train), "n_valid": len(dataset.valid), "n_test": len(dataset.test),
        "best_epoch": state["best_epoch"] + 1, "epochs_run": state["epoch"],
        "valid": valid_metrics, "test": test_metrics,
        "data_fingerprint": dataset.fingerprint, "identity": run.identity, "device": str(ctx.device),
        "medaug_version": __version__,
        "wall_s": round(time.time() - run.start + (extra or {}).get("stages", {}).get("heated_wall_s", 0.0), 2),
        "provenance": provenance(ctx.device),
    }
    test_masks = predict_masks(method, ctx, dataset.test.images)
    if test_masks is not None and dataset.test.rois is not None:
        result["mask"] = split_mask_metrics(method, ctx, dataset.test, keep=test_masks)
    if "collapse" in state:
        result["collapse"] = state["collapse"]
    result["world_size"] = ctx.world
    if dataset.info.get("warnings"):
        result["data_warnings"] = list(dataset.info["warnings"])
    if stage:
        result["stage"] = stage
    if "start" in state:
        result["start"] = {"kept": kept_start, "valid": state["start"]["valid"], "from": start_method(run.record)}
        if kept_start and run.lead:
            console.print(f"{run.out}: kept the starting checkpoint (epoch 0, the `{start_method(run.record)}` baseline): no epoch of "
                          f"{cfg.method} beat its validation {cfg.monitor}", highlight=False, soft_wrap=True)
        drop = operating_point_drop(state["start"]["valid"], valid_metrics)
        if not kept_start and drop > OPERATING_POINT_DROP and run.lead:
            console.print(f"{run.out}: warning: the chosen epoch beat its start in validation {cfg.monitor} but its validation "
                          f"balanced accuracy is {drop:.3f} below the start's (monitor = \"balanced_accuracy\" selects on it)",
                          highlight=False, soft_wrap=True)
    if run.branch_at and run.lead and not (run.out / BRANCH).is_file():
        save_branch(run)  # stopped early, before the branch epoch: its best so far is the none stage
    if run.average_last:
        result["selection"] = f"mean of the last {len(averaged)} epochs' weights"
    result.update(extra or {})
    if run.lead:
        _write_artifacts(run.out, dataset, test_probs, test_masks, state, run.snap_idx)
        if not stage:  # the run's model card (data, config, metrics, intended use); a stage folder is part of its run
            saved = {**run.record.to_dict(), "method_options": resolved_options(run.record.method, run.record.method_options)}
            write_card(run.out / "model_card.md", result, saved, method.test_time_rule())
        write_json(run.out / "metrics.json", result)  # last: its presence marks the run finished
    run.track.finish(result, run.out)
    return result


def _write_artifacts(out: Path, dataset: Dataset, probs: np.ndarray, masks: np.ndarray | None, state: dict, snap_idx) -> None:
    from .figures import mask_grid

    test = dataset.test
    save_npz(out / "predictions.npz", probs=probs, labels=test.labels, studies=test.studies)
    if masks is not None:
        pick = snapshot_indices(test)
        rois = None if test.rois is None else test.rois[pick]
        mask_grid(test.images[pick], masks[pick], rois, out / "masks.png")
        extra = {} if rois is None else {"rois": rois}
        if rois is not None and test.has_roi is not None:
            extra["has_roi"] = test.has_roi[pick]  # which images have a mask file ("no mask" in the gallery)
        save_npz(out / "masks.npz", images=test.images[pick], masks=masks[pick], **extra)
    if state["snapshots"]:
        from .figures import mask_history_grid

        hist = torch.stack(state["snapshots"]).numpy()
        save_npz(out / "mask_history.npz", masks=hist, images=dataset.valid.images[snap_idx])
        mask_history_grid(hist, dataset.valid.images[snap_idx], out / "mask_history.png")


def _json_line(row: dict) -> str:
    return json.dumps(row) + "\n"


def read_json(path: Path, what: str = "") -> dict:
    """A medaug JSON file (metrics.json, meta.json) as a dict, or one line naming the file and the fix."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MedaugError(f"{path}: {what + ' ' if what else ''}file is unreadable ({exc.__class__.__name__}); "
                          "delete the folder's results or use --overwrite") from None
    if not isinstance(value, dict):
        raise MedaugError(f"{path}: expected a JSON object, found {type(value).__name__}; delete it or use --overwrite")
    return value


def read_toml(path: Path) -> dict:
    """A run folder's config.toml ({} when absent), or one line naming the file and the fix."""
    if not Path(path).is_file():
        return {}
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MedaugError(f"{path}: unreadable config ({exc.__class__.__name__}); delete the run folder or use --overwrite") from None


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """torch.load of a medaug checkpoint (weights only), or one line naming the file: truncated, garbage (whatever
    torch.load raises on it, :func:`io_utils.load_torch`), not a dict."""
    ckpt = load_torch(path, device)
    if not isinstance(ckpt, dict):
        raise MedaugError(f"{path}: not a medaug checkpoint (holds a {type(ckpt).__name__}); delete it or use --overwrite")
    return ckpt
