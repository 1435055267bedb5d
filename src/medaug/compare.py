"""``medaug compare --data DIR``: which augmentation helps on this data, within a time budget, as a verdict.

One call builds the fair plan from the data (:func:`inspect_data`, :func:`choose_model`), times a few
training steps of every method on this device and announces the time per run and in total before any
training (:func:`time_methods`, :func:`run_seconds`), fits the plan to ``budget`` (:func:`fit_budget`:
fewer seeds, then no costly learned method, then a smaller model), and runs it in rounds, one seed of
every remaining method per round, ``none`` first. After each round from the third, methods significantly
worse than the best on the validation split are dropped (:func:`medaug.verdict.race`). The test split is
read once, at the end, for the verdict (:func:`medaug.verdict.decide`). ``compare.json`` beside the runs
holds the plan, the estimate, the rounds and the drops; a second call with the same choices reuses the
plan, skips finished runs and recomputes every racing decision from them; ``medaug report`` on the folder
prints the same verdict. docs/compare.md states the rules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import shutil
import statistics
import time
from pathlib import Path
from typing import Callable

from .config import TrainConfig
from .errors import MedaugError
from .experiments import ExperimentConfig, dataset_name, make_plan, method_spec, run_dir, run_plan, start_of
from .methods import METHODS
from .progress import Outlook, duration
from .ray_executor import ray_session
from .verdict import (CLASSICAL, COMPARE_FILE, DELTA, MIN_RACE_SEEDS, compared_runs, decide, race, race_delta, read_compare,
                      settled_text, valid_score)

CANDIDATES = ("none", *CLASSICAL, "apga", "pgnm")  #: the methods compared unless --methods says otherwise
STANDARD = ("none", *CLASSICAL, "cutout")  #: cheap baselines the budget never drops; the others are "learned"
METRICS = ("auroc", "accuracy", "balanced_accuracy", "macro_f1", "kappa")  #: --metric (higher is better)
TESTS = ("t", "both", "wilcoxon")
SMALL_SET = 1000  #: fewer training images than this: the tiny CNN even on a GPU
VERSION = 1


# --- choices ------------------------------------------------------------------------------------

def parse_budget(text: str) -> float:
    """'2h', '90m', '1.5h', '3600s', '1h30m' -> seconds; anything else is one line naming --budget."""
    value = str(text).strip().lower().replace(" ", "")
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|min|m|s)", value)
    units = {"h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0}
    if not parts or "".join(n + u for n, u in parts) != value:
        raise MedaugError(f"--budget {text!r}: give a duration with a unit, e.g. 2h, 90m, 1.5h or 3600s")
    seconds = sum(float(n) * units[u] for n, u in parts)
    if seconds <= 0:
        raise MedaugError(f"--budget {text!r}: must be more than 0, e.g. 2h")
    return seconds


def inspect_data(data: str, fmt: str = "auto", n_shot: int = 0, sample: int = 16) -> dict:
    """Read the dataset's index once and decode ``sample`` images: native side (median of the shorter sides),
    colour, classes and a count of training images (k-shot and a carved validation split counted) that
    :func:`choose_model` uses. The exact split counts come later from the loaded dataset."""
    import numpy as np

    from .data.index import read_index
    from .data.io import load_image

    index = read_index(data, fmt)
    paths = sorted(set(index.frame["path"]))
    pick = sorted(np.random.default_rng(0).choice(len(paths), size=min(sample, len(paths)), replace=False))
    sides, colour = [], False
    for i in pick:
        image = load_image(paths[i])  # [H, W] gray or [H, W, 3] colour, as the cache reads it
        sides.append(min(image.shape[:2]))
        colour |= image.ndim == 3
    frame = index.frame
    splits = set(frame["split"])
    train = frame[frame["split"] == "train"] if "train" in splits else frame
    share = 1.0 if "valid" in splits else (1 - 0.2 if "train" in splits else 0.6)  # carved validation / 60:25:15
    per_class = train["label"].value_counts()
    n_train = sum(min(n_shot, int(c)) for c in per_class) if n_shot else int(len(train) * share)
    return {"native_size": int(np.median(sides)), "colour": bool(colour), "classes": list(index.classes),
            "images": int(len(frame)), "n_train_guess": n_train}


def choose_model(native: int, n_train: int, gpu: bool, model: str | None = None, size: int | None = None) -> tuple[str, int, str]:
    """(model, size, the rule in words). Unless given: the tiny CNN at min(side, 64) px on a CPU or with fewer
    than :data:`SMALL_SET` training images; else resnet18 at min(side, 128) px (resnet18_small, the 28-px
    MedMNIST stem, for images under 64 px). Images are never upsampled by the rule."""
    if model is None:
        if gpu and n_train >= SMALL_SET:
            model = "resnet18" if native >= 64 else "resnet18_small"
            why = f"a GPU and {n_train} training images (>= {SMALL_SET}): {model}"
        else:
            model = "tiny"
            why = f"{'no GPU' if not gpu else f'{n_train} training images (< {SMALL_SET})'}: the tiny CNN"
    else:
        why = f"--model {model}"
    if size is None:
        cap = 64 if model == "tiny" or model.endswith("_small") else 128
        size = max(16, min(native, cap))
        why += f" at min(image side {native}, {cap}) = {size} px"
    else:
        why += f" at --size {size} px"
    return model, size, why


def smaller(model: str, size: int) -> tuple[str, int] | None:
    """The next cheaper (model, size) of the budget's ladder: halve a large network's side down to 64 px, then the
    tiny CNN at up to 64 px, then the tiny CNN at 32 px; None at the end."""
    if model != "tiny":
        return (model, size // 2) if size // 2 >= 64 else ("tiny", min(size, 64))
    return ("tiny", max(32, size // 2)) if size > 32 else None


# --- the estimate -------------------------------------------------------------------------------

@dataclasses.dataclass
class Timing:
    """Seconds measured on this device, per method: one training step (a batch of ``batch_size``), a run's setup
    (classifier and method built, with as many training images as a run has), one image evaluated with the
    method's prediction rule, one test image's saved mask (0 without masks), the mask figures a run draws at its
    end (0 without masks); and one epoch's checkpoint writes."""

    step_s: dict[str, float]
    setup_s: dict[str, float]
    predict_s: dict[str, float]
    masks_s: dict[str, float]
    save_s: float
    device: str = "cpu"
    figures_s: dict[str, float] = dataclasses.field(default_factory=dict)  #: a run's mask figures (masks.png, mask_history.png)


def time_methods(cfg: TrainConfig, names: list[str], method_options: dict, n_train: int = 0, steps: int = 7,
                 warmup: int = 2) -> Timing:
    """A few timed training steps of each plan method on random images of the run's shape and batch (a fresh
    classifier and the method's setup: ``bench.method_context``, as ``bench.prepare_method`` builds them), one timed
    evaluation pass with its prediction rule and masks, and one checkpoint write, on ``cfg.device``."""
    import tempfile

    import numpy as np
    import torch

    from .bench import _sync, method_context
    from .device import resolve_device
    from .io_utils import save_torch

    device = resolve_device(cfg.device)
    images = np.random.default_rng(0).integers(0, 256, (max(2, min(n_train, 2048)), cfg.size, cfg.size), dtype=np.uint8)
    warm, ctx, x, y = method_context("none", cfg, {}, cfg.batch_size)
    warm.train_step(ctx, x, y)  # first-call costs (allocators, kernels, matplotlib's import) are not a run's
    from . import figures  # noqa: F401  (matplotlib, once per process)
    step_s, setup_s, predict_s, masks_s, figures_s, save_s = {}, {}, {}, {}, {}, 0.0
    tmp_dir = Path(tempfile.mkdtemp(prefix="medaug-compare-"))

    def timed(fn, repeat: int) -> float:  # the median call: a spell of another job's load on a shared CPU counts once
        times = []
        for _ in range(repeat):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    for name in names:
        base, opts = method_spec(name, method_options)
        t0 = time.perf_counter()
        try:
            method, ctx, x, y = method_context(base, cfg, opts, cfg.batch_size, train_images=images)
            setup_s[name] = time.perf_counter() - t0
            for _ in range(warmup):
                method.train_step(ctx, x, y)
            step_s[name] = timed(lambda: method.train_step(ctx, x, y), steps)
            ctx.model.eval()
            xe = torch.rand(min(cfg.eval_batch_size, 64), 1, cfg.size, cfg.size, device=device)
            with torch.no_grad():
                method.predict(ctx, xe)
                predict_s[name] = timed(lambda: method.predict(ctx, xe), 3) / len(xe)
                has_masks = method.masks(ctx, xe) is not None
                has_soft = has_masks or method.saliency(ctx, xe) is not None
            masks_s[name] = timed(lambda: method.masks(ctx, xe), 3) / len(xe) if has_masks else 0.0
            figures_s[name] = mask_figures_s(cfg, has_masks, tmp_dir) if has_soft else 0.0
        except MedaugError:
            raise
        except Exception as exc:  # a shape or type error inside a network: name the combination
            raise MedaugError(f"compare: method {name!r} does not run on {cfg.size} px images with model {cfg.model!r} "
                              f"({type(exc).__name__}: {exc}); leave it out (--methods) or change --model/--size") from None
        if name == "none":
            t0 = time.perf_counter()
            save_torch(tmp_dir / "checkpoint.pt", {"model": ctx.model.state_dict(), "optimizer": ctx.optimizer.state_dict()})
            save_s = 1.5 * (time.perf_counter() - t0)  # checkpoint.pt every epoch, best.pt on improvements
    shutil.rmtree(tmp_dir, ignore_errors=True)
    return Timing(step_s, setup_s, predict_s, masks_s, save_s, str(device), figures_s)


def mask_figures_s(cfg: TrainConfig, hard: bool, folder: Path) -> float:
    """Seconds of the mask figures a run of a mask method draws at its end: masks.png of 8 test images (``hard``
    masks only) and mask_history.png of 8 validation images over (at most 10 of) its epochs."""
    import numpy as np

    from .figures import mask_grid, mask_history_grid

    images = np.zeros((8, cfg.size, cfg.size), np.uint8)
    t0 = time.perf_counter()
    if hard:
        mask_grid(images, np.ones_like(images), None, folder / "masks.png")
    mask_history_grid(np.ones((min(cfg.epochs, 10), 8, cfg.size, cfg.size), np.uint8), images, folder / "history.png")
    return time.perf_counter() - t0


def n_batches(n_train: int, batch_size: int) -> int:
    """Training steps per epoch (train.batches: a trailing batch under 2 images is dropped)."""
    return n_train // batch_size + (1 if n_train % batch_size >= 2 else 0)


def run_seconds(cfg: TrainConfig, name: str, counts: dict[str, int], t: Timing) -> float:
    """Estimated seconds of one run of plan method ``name`` with config ``cfg`` (its plan config: two-stage
    methods train ``epochs - baseline_epochs`` of their own, a fine-tuning stage trains ``finetune_epochs`` with
    the ``none`` step) on ``counts`` (train / valid / test images). Per stage: its setup; per epoch the training
    steps, a validation pass and the checkpoint writes; at the end a validation and a test pass and the test masks.
    A two-stage run also scores its starting checkpoint on validation (epoch 0, the plain rule of ``none``)."""
    from .train import baseline_epochs, finetune_epochs

    steps = n_batches(counts["train"], cfg.batch_size)

    def stage(epochs: int, key: str) -> float:
        per_epoch = steps * t.step_s[key] + counts["valid"] * t.predict_s[key] + t.save_s
        final = (counts["valid"] + counts["test"]) * t.predict_s[key] + counts["test"] * t.masks_s[key]
        return t.setup_s[key] + epochs * per_epoch + final + t.figures_s.get(key, 0.0)

    if METHODS.get(cfg.method).needs_baseline and cfg.budget == "equal":
        return stage(cfg.epochs - baseline_epochs(cfg), name) + counts["valid"] * t.predict_s["none"]
    tune = finetune_epochs(cfg)
    if tune:
        heated = cfg.epochs - tune if cfg.budget == "equal" else cfg.epochs
        return stage(heated, name) + stage(tune, "none")
    return stage(cfg.epochs, name)


def plan_estimates(plan, counts: dict[str, int], timing: Timing) -> dict[str, float]:
    """Plan method -> estimated seconds of one of its runs (every seed costs the same)."""
    from .experiments import run_config

    data, shot = plan.experiment.data[0], plan.experiment.shots[0]
    return {m: run_seconds(run_config(plan, data, m, shot, 0), m, counts, timing) for m in plan.experiment.methods}


@dataclasses.dataclass
class Fit:
    """What fits a budget: the methods, seeds, model and size, the estimate and what was cut, in words."""

    methods: list[str]
    seeds: int
    model: str
    size: int
    estimate_s: float
    notes: list[str]


def fit_budget(budget_s: float | None, methods: list[str], seeds: int, model: str, size: int,
               per_run: Callable[[str, int], dict[str, float]], shrink: bool = True,
               min_seeds: int = MIN_RACE_SEEDS) -> Fit:
    """The largest plan whose estimate (every run, no racing) fits ``budget_s``: first fewer seeds (down to
    ``min_seeds``), then without the costliest learned methods (not in :data:`STANDARD`; one at a time, while a
    method besides ``none`` is left), then a smaller model/size (:func:`smaller`; only when ``shrink``: not
    given by the user). What a later cut freed is given back where it fits: dropped learned methods (cheapest
    first), then seeds. ``per_run(model, size)``: plan method -> estimated seconds of one run."""
    def total(ms: list[str], n: int, at: tuple[str, int]) -> float:
        costs = per_run(*at)
        return n * sum(costs[m] for m in ms)

    full = total(methods, seeds, (model, size))
    if budget_s is None or full <= budget_s:
        fits = [f"budget {duration(budget_s)}: the full plan fits (about {duration(full)}); nothing was cut"] if budget_s else []
        return Fit(list(methods), seeds, model, size, full, fits)
    at, kept, n = (model, size), list(methods), seeds
    while n > min_seeds and total(kept, n, at) > budget_s:
        n -= 1
    while total(kept, n, at) > budget_s:
        learned = [m for m in kept if m not in STANDARD]
        if not learned or len([m for m in kept if m != "none"]) <= 1:
            break
        kept.remove(max(learned, key=lambda m: per_run(*at)[m]))
    while total(kept, n, at) > budget_s and shrink and smaller(*at) is not None:
        at = smaller(*at)
    if total(kept, n, at) > budget_s:
        raise MedaugError(f"--budget {duration(budget_s)}: even the smallest plan ({', '.join(kept)} x {n} seeds, "
                          f"{at[0]} at {at[1]} px) needs about {duration(total(kept, n, at))} here; give a larger --budget, "
                          "fewer --epochs or fewer --methods")
    for m in sorted((m for m in methods if m not in kept), key=lambda m: per_run(*at)[m]):  # give back what fits
        if total(kept + [m], n, at) <= budget_s:
            kept.append(m)
    kept = [m for m in methods if m in kept]
    while n < seeds and total(kept, n + 1, at) <= budget_s:
        n += 1
    notes = [f"budget {duration(budget_s)}: the full plan ({len(methods)} methods x {seeds} seeds, {model} at {size} px) "
             f"needs about {duration(full)}"]
    if n < seeds:
        notes.append(f"cut: seeds {seeds} -> {n} (the first cut; racing needs at least {min_seeds})")
    for m in (m for m in methods if m not in kept):
        notes.append(f"cut: {m}, a learned method, the costliest left (about {duration(per_run(*at)[m])} a run here)")
    if at != (model, size):
        notes.append(f"cut: model {model} at {size} px -> {at[0]} at {at[1]} px (cheaper steps; the last cut)")
    est = total(kept, n, at)
    notes.append(f"the plan that fits: {len(kept)} methods x {n} seeds, {at[0]} at {at[1]} px, about {duration(est)}")
    return Fit(kept, n, at[0], at[1], est, notes)


# --- the command --------------------------------------------------------------------------------

def compare(data: str | Path, *, out: str | Path | None = None, methods: list[str] | None = None,
            with_generator: str | Path | None = None, model: str | None = None, size: int | None = None,
            epochs: int = 20, seeds: int = 5, n_shot: int = 0, budget: str | None = None, metric: str = "auroc",
            level: float = 0.05, test: str = "t", delta: float = DELTA, device: str = "auto", batch_size: int = 32,
            options: dict[str, dict] | None = None, executor: str = "local", fmt: str = "auto",
            classes: str = "", overwrite: bool = False, progress: bool = True, html: bool = True,
            say: Callable[[str], None] | None = None) -> dict:
    """Compare augmentations on ``data`` and return ``{"root", "verdict", "report", "info"}`` (see the module doc).

    ``methods``: the candidates (default :data:`CANDIDATES`, plus ``generative`` with ``with_generator``: a
    samples folder from ``medaug gen sample`` or a generator folder from ``medaug gen train``, sampled once);
    ``seeds``: the most seeds (rounds); ``budget``: e.g. '2h'; ``metric``: validation metric for model selection,
    racing and the verdict; ``test``/``level``: the verdict's rule (docs/compare.md); ``delta``: the smallest
    gain worth having, in ``metric`` units (racing drops what cannot beat the best by it and stops when nothing
    left can beat none by it; 0: drops only what is significantly worse, never stops early); ``options``: method ->
    its options; ``classes``: merge or rename the data's classes (``TrainConfig.classes``, e.g.
    "no-oa=KL0,KL1;oa=KL2,KL3,KL4"). Progress and the verdict go to ``say`` (default: print).
    """
    say = say or print
    started = time.time()
    budget_s = parse_budget(budget) if budget is not None else None
    check_choices(metric, test, level, seeds, epochs, n_shot, delta)
    options = {k: dict(v) for k, v in (options or {}).items()}
    names = list(methods) if methods else list(CANDIDATES)
    if with_generator and "generative" not in names:
        names.append("generative")
    names = ["none"] + [m for m in dict.fromkeys(names) if m != "none"]
    for name in names:
        method_spec(name, options)  # unknown methods fail here
    if "generative" in names and not with_generator and not options.get("generative", {}).get("samples"):
        raise MedaugError("--methods generative: give --with-generator DIR (a generator folder from `medaug gen train` "
                          "or samples from `medaug gen sample`)")
    if len(names) < 2:
        raise MedaugError("--methods: give at least one method besides none, e.g. none,classical,apga")
    key = dataset_name(str(data)) + (f"-{n_shot}shot" if n_shot else "")
    root = Path(out) if out else Path("runs") / f"compare-{key}"
    choices = {"data": _ident(data), "format": fmt, "methods": names, "with_generator": _ident(with_generator) if with_generator else "",
               "model": model or "", "size": size or 0, "epochs": epochs, "seeds": seeds, "n_shot": n_shot,
               "budget_s": budget_s or 0, "metric": metric, "level": level, "test": test, "device": device,
               "batch_size": batch_size, "options": options}
    if classes:  # only when given: compare folders written before --classes existed still resume
        choices["classes"] = TrainConfig(classes=classes).classes
    if delta:  # only when not 0: compare folders written before --delta existed raced with 0 and resume with --delta 0
        choices["delta"] = delta
    from .io_utils import output_folder, remove_output, write_json

    inputs = tuple(str(p) for p in (data, with_generator) if p and Path(p).is_dir())
    info = None if overwrite else read_compare(root)
    if info is not None and info.get("choices") != choices:
        saved = info.get("choices") or {}
        diff = sorted(k for k in set(saved) | set(choices) if saved.get(k) != choices.get(k))
        shown = "; ".join(f"{k}: {saved.get(k)!r} there, {choices.get(k)!r} now" for k in diff[:3])
        raise MedaugError(f"--out {root}: holds a compare of other choices ({shown}); give the same flags to resume it, "
                          "--overwrite to start it fresh, or another --out")
    existed = root.exists()
    output_folder(root, "experiment", inputs=inputs, overwrite=overwrite, flag="--out")
    if info is None:
        try:
            info = new_plan(str(data), root, choices, names, options, budget_s, say, with_generator, progress)
        except BaseException:
            if not existed:
                remove_output(root)  # bad data or an interrupted estimate: no half-made compare folder
            raise
        write_json(root / COMPARE_FILE, info)
        announce(info, say, data=False)
    else:
        say(f"resuming the compare in {root} (its plan and estimate are in {COMPARE_FILE}; finished runs are skipped)")
        announce(info, say)
    return run_rounds(info, root, executor, progress, html, say, started)


def check_choices(metric: str, test: str, level: float, seeds: int, epochs: int, n_shot: int, delta: float = 0.0) -> None:
    if metric not in METRICS:
        raise MedaugError(f"--metric {metric!r}: choose {', '.join(METRICS)}")
    if test not in TESTS:
        raise MedaugError(f"--test {test!r}: choose {', '.join(TESTS)}")
    if not 0 < level < 1:
        raise MedaugError(f"--level {level}: choose a significance level in (0, 1), e.g. 0.05")
    if not 0 <= delta < 1:
        raise MedaugError(f"--delta {delta}: give the smallest gain worth having in the metric's units, in [0, 1), e.g. 0.01 "
                          "(0: racing drops only significantly worse methods and never stops early)")
    if seeds < MIN_RACE_SEEDS:
        raise MedaugError(f"--seeds {seeds}: give {MIN_RACE_SEEDS} or more (racing and the paired tests need {MIN_RACE_SEEDS})")
    if epochs < 2:
        raise MedaugError(f"--epochs {epochs}: give 2 or more (two-stage methods start from their none run at epoch 4/5 of the budget)")
    if n_shot < 0:
        raise MedaugError(f"--n-shot {n_shot}: give 0 (all training images) or the images per class")


def _ident(path) -> str:
    from .data.medmnist_hub import spec_name

    return str(path).lower() if spec_name(str(path)) else str(Path(path).expanduser().resolve())


def new_plan(data: str, root: Path, choices: dict, names: list[str], options: dict, budget_s: float | None,
             say: Callable[[str], None], with_generator, progress: bool) -> dict:
    """Inspect the data, choose the model, time the methods, fit the budget: compare.json's first content."""
    from .device import resolve_device
    from .experiments import plan_runs
    from .train import check_budget, load_data

    say(f"medaug compare: {data} -> {root}")
    options = {k: dict(v) for k, v in options.items()}  # choices keep the user's own
    facts = inspect_data(data, choices["format"], choices["n_shot"])
    gpu = resolve_device(choices["device"]).type == "cuda"
    model, size, why = choose_model(facts["native_size"], facts["n_train_guess"], gpu, choices["model"] or None,
                                    choices["size"] or None)
    base = TrainConfig(data=data, format=choices["format"], size=size, model=model, epochs=choices["epochs"],
                       batch_size=choices["batch_size"], monitor=choices["metric"], device=choices["device"],
                       classes=choices.get("classes", ""), progress=progress)
    dataset = load_data(dataclasses.replace(base, n_shot=choices["n_shot"], seed=0))  # the cache, built once here
    counts = {split: {c: int((getattr(dataset, split).labels == i).sum()) for i, c in enumerate(dataset.classes)}
              for split in ("train", "valid", "test")}
    sizes = {split: int(sum(v.values())) for split, v in counts.items()}
    generator = {}
    if with_generator:
        samples = generator_samples(str(with_generator), root, max(counts["train"].values()))
        options.setdefault("generative", {})["samples"] = samples
        generator = {"given": str(with_generator), "samples": samples}
    from .train import finetune_epochs

    overrides = {m: {"finetune_epochs": max(1, base.epochs // 2)} for m in names
                 if finetune_epochs(dataclasses.replace(base, method=method_spec(m, options)[0])) >= base.epochs}
    exp = ExperimentConfig(name=root.name, out=str(root.parent), data=[data], methods=names, seeds=[0],
                           shots=[choices["n_shot"]])
    plan = make_plan(exp, base, options, overrides)
    for _, cfg, _ in plan_runs(plan):
        check_budget(cfg)
    data_info = {"path": data, "native_size": facts["native_size"], "colour": facts["colour"], "classes": dataset.classes,
                 "counts": counts, "n_shot": choices["n_shot"]}
    announce_data(data_info, model, size, why, say)
    say(f"timing a few training steps of each method on {resolve_device(base.device)} ...")
    memo: dict[tuple[str, int], dict[str, float]] = {}
    timings: dict[tuple[str, int], Timing] = {}

    def per_run(m: str, s: int) -> dict[str, float]:
        if (m, s) not in memo:
            p = dataclasses.replace(plan, train=dataclasses.replace(base, model=m, size=s))
            timings[(m, s)] = time_methods(p.train, list(plan.experiment.methods), options, sizes["train"])
            memo[(m, s)] = plan_estimates(p, sizes, timings[(m, s)])
        return memo[(m, s)]

    fit = fit_budget(budget_s, list(plan.experiment.methods), choices["seeds"], model, size, per_run,
                     shrink=not (choices["model"] or choices["size"]))
    if (fit.model, fit.size) != (model, size):
        why += f"; the budget made it {fit.model} at {fit.size} px"
    train = dataclasses.replace(base, model=fit.model, size=fit.size)
    t = timings[(fit.model, fit.size)]
    return {"version": VERSION, "status": "running", "choices": choices, "metric": choices["metric"],
            "level": choices["level"], "test": choices["test"],
            "data": data_info,
            "model_rule": why, "model_by_rule": [model, size], "generator": generator,
            "plan": {"methods": fit.methods, "seeds": fit.seeds, "max_seeds": choices["seeds"], "train": train.to_dict(),
                     "method_options": options, "overrides": overrides},
            "estimate": {"per_run_s": {m: memo[(fit.model, fit.size)][m] for m in fit.methods},
                         "total_s": fit.estimate_s, "device": t.device,
                         "timing": dataclasses.asdict(t), "budget_s": budget_s, "cuts": fit.notes},
            "rounds": [], "spent_s": 0.0}


def generator_samples(given: str, root: Path, per_class: int) -> str:
    """The samples folder ``generative`` trains with: ``given`` when it is one (samples.json, or a path with a
    ``{seed}`` placeholder), else samples of the generator folder ``given`` written once into ROOT/generator-samples
    (max(64, the largest class's training images) per class)."""
    path = Path(given)
    if "{" in given or (path / "samples.json").is_file():
        return given
    if (path / "gen_config.toml").is_file() or (path / "checkpoint.pt").is_file():
        from .generative.train import write_samples

        out = root / "generator-samples"
        if not (out / "samples.json").is_file():
            write_samples(path, max(64, per_class), out, seed=0)
        return str(out)
    if path.is_dir() and any(p.is_dir() for p in path.iterdir()):
        return given  # an ImageFolder of samples without samples.json
    raise MedaugError(f"--with-generator {given}: neither a generator folder (`medaug gen train --out`) nor samples "
                      "(`medaug gen sample --out`); give one of them")


def announce_data(d: dict, model: str, size: int, rule: str, say: Callable[[str], None]) -> None:
    """The data as read and the model chosen (compare.json 'data' and 'model_rule')."""
    split_words = {"train": "train", "valid": "validation", "test": "test"}
    say(f"data: {d['native_size']} px {'colour' if d['colour'] else 'gray'} images, {len(d['classes'])} classes; "
        + "; ".join(f"{split_words[s]} {sum(c.values())} ({', '.join(f'{k} {v}' for k, v in c.items())})"
                    for s, c in d["counts"].items())
        + (f"; {d['n_shot']} training images per class (--n-shot)" if d["n_shot"] else ""))
    say(f"model: {model} at {size} px ({rule})")


def announce(info: dict, say: Callable[[str], None], data: bool = True) -> None:
    """The plan and its estimate, printed before any training (``data``: the data and model lines first)."""
    from .train import baseline_epochs, finetune_epochs

    plan, est = info["plan"], info["estimate"]
    train = plan["train"]
    if data:
        announce_data(info["data"], train["model"], train["size"], info["model_rule"], say)
    elif [train["model"], train["size"]] != info.get("model_by_rule", [train["model"], train["size"]]):
        say(f"model: {train['model']} at {train['size']} px, the budget's last cut (the rule chose "
            f"{info['model_by_rule'][0]} at {info['model_by_rule'][1]} px)")
    stages = []
    for m in plan["methods"]:
        base, _ = method_spec(m, plan["method_options"])
        cls = METHODS.get(base)
        if cls.needs_baseline:
            first = baseline_epochs(TrainConfig(epochs=train["epochs"], baseline_epochs=train["baseline_epochs"]))
            stages.append(f"{m} trains epochs {first + 1}-{train['epochs']} from its seed's "
                          f"{start_of(m, plan['method_options'])} run at epoch {first}")
        tune = (plan["overrides"].get(m) or {}).get("finetune_epochs", -1)
        tune = finetune_epochs(TrainConfig(method=base, epochs=train["epochs"], budget=train.get("budget", "equal"),
                                           finetune_epochs=tune))
        if tune:
            stages.append(f"{m} trains {train['epochs'] - tune} epochs with its policy, then {tune} without")
    say(f"methods: {', '.join(plan['methods'])}; up to {plan['seeds']} seeds in rounds (racing from round {MIN_RACE_SEEDS}); "
        f"{train['epochs']} epochs from initialisation each (equal budgets" + (f": {'; '.join(stages)}" if stages else "") + ")")
    say(f"model selection, racing and the choice on validation {info['metric']}; the test split is read once, at the end")
    delta = race_delta(info)
    say(f"racing drops a method that cannot beat the best by {delta:g} and stops when no method left can beat none by "
        f"{delta:g} (--delta)" if delta else "racing drops a method significantly worse than the best (--delta 0)")
    say(f"estimated time per run on {est['device']} (timed training steps of each method, plus validation every epoch, "
        "the test pass and checkpoints):")
    width = max(len(m) for m in plan["methods"])
    for m in plan["methods"]:
        say(f"  {m:<{width}}  {seconds(est['per_run_s'][m])}")
    n = len(plan["methods"]) * plan["seeds"]
    say(f"  total: {n} runs ({len(plan['methods'])} methods x {plan['seeds']} seeds), about {duration(est['total_s'])} "
        "if no method is dropped; racing can only shorten it")
    say("  (Ctrl-C stops it; the same command resumes: finished runs are skipped, racing recomputed from them)")
    for note in est.get("cuts") or []:
        say(f"  {note}")


def seconds(value: float) -> str:
    """A duration for the estimate's table: tenths under 10 s, else :func:`medaug.progress.duration`."""
    return f"{value:.1f} s" if value < 10 else duration(value)


def run_rounds(info: dict, root: Path, executor: str, progress: bool, html: bool, say: Callable[[str], None],
               started: float) -> dict:
    """Round r trains seed r - 1 of every remaining method (``none`` first), then races from round 3; finished
    runs are skipped, so every decision of a resumed compare is recomputed from the same files."""
    plan_info = info["plan"]
    spent_before = float(info.get("spent_s", 0.0))
    train = TrainConfig(**{**plan_info["train"], "progress": progress})
    data, shot = info["data"]["path"], info["data"]["n_shot"]
    exp = ExperimentConfig(name=root.name, out=str(root.parent), data=[data], methods=list(plan_info["methods"]),
                           seeds=[0], shots=[shot], executor=executor)
    full = make_plan(exp, train, plan_info["method_options"], plan_info["overrides"])
    per_run = info["estimate"]["per_run_s"]
    survivors, n_seeds, rounds = list(full.experiment.methods), int(plan_info["seeds"]), []
    outlook = Outlook(total=len(survivors) * n_seeds, spent_before_s=spent_before)
    done_runs, r = 0, 0
    now = {"runs": 0, "wall_s": 0.0, "estimate_s": 0.0}  # trained in this call
    with ray_session(exp) if executor == "ray" else contextlib.nullcontext():  # Ray started once for every round
        while r < n_seeds and len(survivors) > 1:
            seed = r
            outlook.done = done_runs
            outlook.total = done_runs + len(survivors) * (n_seeds - r)
            outlook.estimates = {str(d.resolve()): per_run[m] for s in range(r, n_seeds) for m in survivors
                                 if not ((d := run_dir(full, data, m, shot, s)) / "metrics.json").is_file()}  # left to train
            step = make_plan(dataclasses.replace(exp, methods=survivors, seeds=[seed]), train, plan_info["method_options"],
                             plan_info["overrides"])
            fresh = [m for m in survivors if not (run_dir(full, data, m, shot, seed) / "metrics.json").is_file()]
            t0 = time.time()
            run_plan(dataclasses.replace(step, outlook=outlook))
            if fresh:  # the estimate's check: wall time of the rounds that trained, against those runs' estimates
                timed = info.get("timed") or {"runs": 0, "wall_s": 0.0, "estimate_s": 0.0}
                info = {**info, "timed": {"runs": timed["runs"] + len(fresh), "wall_s": round(timed["wall_s"] + time.time() - t0, 2),
                                          "estimate_s": round(timed["estimate_s"] + sum(per_run[m] for m in fresh), 2)}}
                now["runs"] += len(fresh)
                now["wall_s"] += time.time() - t0
                now["estimate_s"] += sum(per_run[m] for m in fresh)
            done_runs += len(survivors)
            r += 1
            dirs = {m: [run_dir(full, data, m, shot, s) for s in range(r)] for m in survivors}
            missing = [d for ds in dirs.values() for d in ds if not (d / "metrics.json").is_file()]
            if missing:
                _save(info, root, rounds, "waiting", spent_before, started)
                say(f"{len(missing)} run(s) of round {r} are being trained by another medaug process (first: {missing[0]}); "
                    "run this command again when it has finished to continue the racing")
                return {"root": root, "verdict": None, "report": None, "info": info}
            scores = {m: {s: valid_score(d, info["metric"]) for s, d in enumerate(ds)} for m, ds in dirs.items()}
            last = r >= n_seeds  # after the last round a drop saves nothing: every remaining method goes to the verdict
            decision = race(scores, alpha=float(info["level"]), min_seeds=n_seeds + 1 if last else MIN_RACE_SEEDS,
                            delta=race_delta(info))
            drops = [{"method": t["method"], "round": r, "best": decision["best"], "diff": t["diff"], "p": t["p"],
                      "p_holm": t["p_holm"], "n": decision["n"], "delta": decision["delta"]}
                     for t in decision["tests"] if t["dropped"]]
            survivors = [m for m in survivors if m not in {d["method"] for d in drops}]
            record = {"round": r, "seed": seed, "methods": list(dirs), "best": decision["best"], "means": decision["means"],
                      "tests": decision["tests"], "dropped": drops, "last": last, "delta": decision["delta"]}
            if decision["settled"] and len(survivors) > 1:
                record["settled"] = decision["settled"]  # nothing left can gain delta over none: the rounds stop here
            if drops and _extend(info, rounds + [record], survivors, r, n_seeds) != n_seeds:
                n_seeds = record["seeds"] = _extend(info, rounds + [record], survivors, r, n_seeds)
            rounds.append(record)
            _save(info, root, rounds, "running", spent_before, started)
            say(_round_line(record, info["metric"]))
            if "settled" in record:
                break
    info = _save({**info, "seeds_run": n_seeds}, root, rounds, "done", spent_before, started)
    return finish(info, root, html, say, started, now)


def _extend(info: dict, rounds: list[dict], survivors: list[str], r: int, n_seeds: int) -> int:
    """With a budget that cut the seeds: the most seeds (up to the asked number) whose estimate, the finished
    rounds' runs counted, still fits, so the time of dropped methods goes to the rest."""
    budget_s, most = info["estimate"].get("budget_s"), int(info["plan"]["max_seeds"])
    if not budget_s or n_seeds >= most:
        return n_seeds
    per_run = info["estimate"]["per_run_s"]
    spent = sum(per_run[m] for rec in rounds for m in rec["methods"])
    for n in range(most, n_seeds, -1):
        if spent + sum(per_run[m] for m in survivors) * (n - r) <= budget_s:
            return n
    return n_seeds


def _round_line(record: dict, metric: str) -> str:
    best, delta = record["best"], float(record.get("delta", 0.0))
    text = f"round {record['round']} (seed {record['seed']}): best on validation {metric}: {best} ({record['means'].get(best, math.nan):.3f})"
    why = f"cannot beat {best} by {delta:g}: " if delta else ""
    if not record["tests"]:
        text += (f"; no racing test before round {MIN_RACE_SEEDS}" if record["round"] < MIN_RACE_SEEDS
                 else "; the last round: no racing test (a drop would save nothing)" if record.get("last")
                 else "; nothing to drop (none, the reference, is never dropped)")
    elif record["dropped"]:
        text += "; dropped " + "; ".join(f"{d['method']} ({d['diff']:+.3f}, {why}one-sided paired t-test over {d['n']} seeds, "
                                         f"Holm p {d['p_holm']:.3g})" for d in record["dropped"])
    else:
        text += f"; none dropped (no method {'that cannot beat the best by ' + format(delta, 'g') if delta else 'significantly worse'})"
    if "seeds" in record:
        text += f"; seeds now {record['seeds']}"
    if "settled" in record:
        text += "; the race stops: " + settled_text(record, metric)
    return text


def _save(info: dict, root: Path, rounds: list[dict], status: str, spent_before: float, started: float) -> dict:
    """compare.json with the rounds so far, the status and the wall time of every call so far (atomic)."""
    from .io_utils import write_json

    info = {**info, "rounds": rounds, "status": status, "spent_s": round(spent_before + time.time() - started, 2)}
    write_json(root / COMPARE_FILE, info)
    return info


def finish(info: dict, root: Path, html: bool, say: Callable[[str], None], started: float, now: dict) -> dict:
    """The verdict (the test split read here, once), the report folder, the time taken against the estimate."""
    from .report import write_report
    from .results import collect

    df = collect(root)
    verdict = decide(df, info)
    folder = write_report(root, level=float(info["level"]), test=info["test"], html=html,
                          metrics=list(dict.fromkeys([info["metric"], "balanced_accuracy", "accuracy"])))
    say("")
    say(verdict["text"])
    say(time_line(info, df, started, now))
    return {"root": root, "verdict": verdict, "report": folder, "info": info, "runs": compared_runs(df, info)}


def time_line(info: dict, df, started: float, now: dict) -> str:
    """Wall time of this call, the training rounds' wall time against the estimate of the runs they trained (the
    estimate's check; compare.json 'timed' sums it over every call), and what racing saved."""
    per_run = info["estimate"]["per_run_s"]
    text = f"time: {duration(time.time() - started)} for this call"
    if now["runs"]:
        text += (f"; its {now['runs']} trained run(s) took {duration(now['wall_s'])} against an estimate of "
                 f"{duration(now['estimate_s'])} ({now['wall_s'] / max(now['estimate_s'], 1e-9):.2f}x)")
    else:
        text += "; nothing to train (every run of the plan was finished)"
    timed = info.get("timed")
    if timed and timed["runs"] != now["runs"]:
        text += (f"; over every call {timed['runs']} runs took {duration(timed['wall_s'])} against "
                 f"{duration(timed['estimate_s'])} ({timed['wall_s'] / max(timed['estimate_s'], 1e-9):.2f}x)")
    skipped = len(per_run) * int(info.get("seeds_run", info["plan"]["seeds"])) - int(df["method"].isin(per_run).sum())
    return text + (f"; the plan without racing was estimated at {duration(info['estimate']['total_s'])}"
                   + (f", and racing skipped {skipped} of its runs" if skipped > 0 else ""))
