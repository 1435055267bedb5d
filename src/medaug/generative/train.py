"""One trainer for the GAN and the diffusion model: steps, checkpoints, exact resume, Rich progress.

A generator folder holds::

    gen_config.toml  the GenConfig
    checkpoint.pt    model + optimiser + RNG state + step (written atomically every ``ckpt_every`` steps)
    log.jsonl        losses (means over ``log_every`` steps), ADA p, time
    preview.png      one row of samples per class from the EMA model
    generator.json   written last: classes, size, channels, steps, wall time (its presence marks the run finished)

The training images are the *train* split of ``--data`` after the validation carve (and after
k-shot sampling with ``n_shot``/``seed``), the same images a classifier run with those settings
trains on; validation and test images are never seen by the generator. With the model option
``balanced`` (the GAN's default) each batch is drawn with every class equally likely (image weight
1 / its class's count), so a minority class gets as many generator and discriminator updates as
the majority; otherwise batches are uniform over the images. A generator takes and makes images of
the data's channels (1 gray, 3 colour), recorded in its checkpoint and generator.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from ..config import (NonNegInt, PosInt, Range, Seed, check_range, check_types, dump_toml, field_default, format_classes,
                      options_from, parse_classes)
from ..data.cache import Dataset, check_cache_root, load_dataset
from ..device import check_memory, resolve_device, rng_state, seed_everything, set_rng_state
from ..errors import MedaugError
from ..io_utils import check_replaceable, output_folder, owned, remove_output, save_torch, write_json, write_text
from ..progress import live_view
from . import model_class


@dataclass
class GenConfig:
    data: str = ""
    model: str = "gan"  #: gan | diffusion
    size: Annotated[int, Range(ge=8)] = 32
    steps: NonNegInt = 0  #: 0 = the model's ``default_steps`` (its CPU-sized budget)
    batch_size: Annotated[int, Range(ge=2)] = 16
    seed: Seed = 0
    n_shot: NonNegInt = 0  #: training images per class (0 = all), sampled with ``seed`` like classifier runs
    ckpt_every: PosInt = 100
    log_every: PosInt = 10
    device: str = "auto"
    format: str = "auto"
    val_fraction: Annotated[float, Range(gt=0, lt=1)] = 0.2
    split_seed: Seed = 0
    cache: str = ""
    progress: bool = True
    options: dict = field(default_factory=dict)  #: model options (GAN.Options / Diffusion.Options fields)
    classes: str = ""  #: a class mapping (TrainConfig.classes, ``--classes``): the generator's classes are the new ones

    def __post_init__(self) -> None:
        check_types(self, "gen config")  # types and each field's Range
        if self.steps == 0:
            self.steps = model_class(self.model).default_steps
        if self.classes:
            self.classes = format_classes(*parse_classes(self.classes))
        options_from(model_class(self.model).Options, self.options, f"--model {self.model} (-o)", noun="option")  # before any work

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def build_model(cfg: GenConfig, num_classes: int, device: torch.device, channels: int = 1):
    """The ``cfg.model`` generator for ``num_classes`` classes of images with ``channels`` (1 gray, 3 colour)."""
    cls = model_class(cfg.model)
    options_from(cls.Options, cfg.options, f"--model {cfg.model} (-o)", noun="option")
    try:
        return cls(num_classes, cfg.size, cfg.batch_size, device, cfg.options, channels=channels)
    except (TypeError, ValueError) as exc:
        raise MedaugError(f"--model {cfg.model}: bad option: {exc}") from None


def load_train_images(cfg: GenConfig) -> Dataset:
    return load_dataset(cfg.data, size=cfg.size, fmt=cfg.format, cache=cfg.cache or None, val_fraction=cfg.val_fraction,
                        split_seed=cfg.split_seed, n_shot=cfg.n_shot or None, shot_seed=cfg.seed, progress=cfg.progress,
                        classes=cfg.classes)


def train_generator(cfg: GenConfig, out_dir: str | Path, dataset: Dataset | None = None, overwrite: bool = False) -> dict:
    """Train (or resume, or extend to more steps) a generator in ``out_dir``; returns generator.json's dict.

    Only a folder holding this configuration's generator (gen_config minus the step count, and the
    data fingerprint) is resumed or extended; another one is refused (``overwrite``: start fresh).
    """
    from ..train import check_identity, data_inputs, left_behind, load_checkpoint, read_json

    out = Path(out_dir)
    model_class(cfg.model)  # name check before any work
    check_cache_root(data_inputs(cfg))
    check_memory(2 * cfg.batch_size * cfg.size**2 * 4, f"--batch-size {cfg.batch_size} with --size {cfg.size}: real and "
                 f"generated batches of {cfg.batch_size} float32 images of {cfg.size} x {cfg.size}",
                 "lower --batch-size or --size", resolve_device(cfg.device))
    output_folder(out, "generator", inputs=data_inputs(cfg), overwrite=overwrite)
    if overwrite:
        left_behind(out, ("generator.json", "checkpoint.pt"))
    done = out / "generator.json"
    ckpt_path = out / "checkpoint.pt"
    try:
        if done.is_file() or ckpt_path.is_file():
            fp = dataset.fingerprint if dataset is not None else _fingerprint(cfg)
            saved = load_checkpoint(ckpt_path, "cpu").get("config", {}) if ckpt_path.is_file() else {}
            check_identity(out, {**gen_identity(saved), "data_fingerprint": saved.get("data_fingerprint")},
                           {**gen_identity(cfg.to_dict()), "data_fingerprint": fp}, "a generator")
        if done.is_file():
            info = read_json(done, "the generator's")
            if info.get("steps", 0) >= cfg.steps:
                return info
        return _train(cfg, out, dataset)
    except BaseException:
        if not ckpt_path.is_file() and not done.is_file():
            remove_output(out)  # nothing to resume: no half-written folder
        raise


#: GenConfig fields that do not change what a generator is (more steps extend it)
GEN_NOT_IDENTITY = ("steps", "progress", "device", "ckpt_every", "log_every", "cache")


def gen_identity(values: dict) -> dict:
    """What makes a generator folder this configuration's; a field missing from an older folder's config counts as its default."""
    import tomllib

    values = {**{f.name: field_default(f) for f in dataclasses.fields(GenConfig) if f.name != "steps"}, **values}
    values = tomllib.loads(dump_toml({k: v for k, v in values.items() if k not in GEN_NOT_IDENTITY and k != "data_fingerprint"}))
    if values.get("data"):
        values["data"] = str(Path(values["data"]).expanduser().resolve())
    return values


def _fingerprint(cfg: GenConfig) -> str:
    from ..config import TrainConfig
    from ..train import data_fingerprint

    return data_fingerprint(TrainConfig(data=cfg.data, format=cfg.format, size=cfg.size, progress=False))


def batch_indices(labels: torch.Tensor, batch: int, seed: int, step: int, balanced: bool) -> torch.Tensor:
    """Indices int64 [batch] (distinct) of step ``step``'s batch; a function of (seed, step) only, so a
    resumed run sees the same batches. ``balanced``: image i drawn with weight 1 / count(labels[i]),
    every class equally likely; else uniform over the images. labels int64 [N]."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    if not balanced:
        return torch.randperm(len(labels), generator=g)[:batch]
    weights = (1.0 / torch.bincount(labels).double())[labels]
    return torch.multinomial(weights, batch, generator=g)


def _train(cfg: GenConfig, out: Path, dataset: Dataset | None) -> dict:
    from ..train import load_checkpoint

    seed_everything(cfg.seed)
    if dataset is None:
        dataset = load_train_images(cfg)
    train = dataset.train
    classes = dataset.classes
    device = resolve_device(cfg.device)
    write_text(out / "gen_config.toml", dump_toml({"gen": cfg.to_dict()}))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, len(classes), device, dataset.channels)
    step, history, wall = 0, [], 0.0
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, device)
        try:
            model.load_state_dict(ckpt["model"])
            set_rng_state(ckpt["rng"])
            step, history, wall = ckpt["step"], ckpt["history"], ckpt.get("wall_s", 0.0)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise MedaugError(f"{ckpt_path}: does not fit this generator ({exc.__class__.__name__}); --overwrite to start fresh") from None
    check_replaceable(*(out / name for name in ("checkpoint.pt", "log.jsonl", "preview.png", "generator.json")))

    images = torch.from_numpy(np.ascontiguousarray(train.images))  # uint8 [N, C, S, S], stays on the host
    labels = torch.from_numpy(np.array(train.labels))  # a writable copy (the split may be a read-only view)
    n = len(labels)
    if n < 2:
        raise MedaugError(f"{cfg.data}: only {n} training image(s); a generator needs at least 2")
    bs = min(cfg.batch_size, n)
    balanced = bool(getattr(model.opts, "balanced", False))
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    t0 = time.time()

    def save() -> None:
        save_torch(ckpt_path, {"model": model.state_dict(), "rng": rng_state(), "step": step, "history": history,
                               "config": {**cfg.to_dict(), "data_fingerprint": dataset.fingerprint}, "classes": classes,
                               "channels": dataset.channels, "wall_s": wall + time.time() - t0})
        write_text(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in history))

    with live_view(cfg.progress) as bar:
        task = bar.add_task(f"{cfg.model} {cfg.size}px", total=cfg.steps, completed=step, status="")
        while step < cfg.steps:
            idx = batch_indices(labels, bs, cfg.seed, step, balanced)
            x = images[idx].to(device).float().div_(127.5).sub_(1.0)  # [B, C, S, S] in [-1, 1]
            for k, v in model.train_step(x, labels[idx].to(device)).items():
                sums[k] = sums.get(k, 0.0) + v.float()
                counts[k] = counts.get(k, 0) + 1  # per key: R1 is logged only on its lazy steps
            step += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                row = {"step": step, **{k: float(v) / counts[k] for k, v in sums.items()}, **model.extra_logs(),
                       "time_s": round(wall + time.time() - t0, 2)}
                bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v) and k != "ada_rt"]
                if bad:
                    raise MedaugError(f"{out}: {', '.join(bad)} became NaN/inf at step {step}; lower the lr (-o lr=...)")
                history.append(row)
                sums, counts = {}, {}
                losses = " ".join(f"{k} {v:.3f}" for k, v in row.items() if k.startswith("loss"))
                bar.update(task, completed=step, status=f"{losses} {model.status()}")
            else:
                bar.update(task, completed=step)
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                save()
        bar.remove_task(task)
    wall += time.time() - t0
    preview(model, classes, out / "preview.png", seed=cfg.seed)
    info = {"model": cfg.model, "size": cfg.size, "channels": dataset.channels, "steps": step, "classes": classes, "n_train": n,
            "n_train_per_class": {c: int((train.labels == i).sum()) for i, c in enumerate(classes)},
            "data": str(cfg.data), "n_shot": cfg.n_shot, "seed": cfg.seed, "device": str(device),
            "data_fingerprint": dataset.fingerprint, "wall_s": round(wall, 2), "last": history[-1] if history else {}}
    write_json(out / "generator.json", info)
    return info


def load_generator(folder: str | Path, device: str = "auto"):
    """(model with the EMA weights loaded, classes, GenConfig) from a generator folder."""
    folder = Path(folder)
    ckpt_path = folder / "checkpoint.pt"
    if not ckpt_path.is_file():
        raise MedaugError(f"{folder}: no checkpoint.pt; train one with `medaug gen train --out {folder}`")
    from ..train import load_checkpoint

    dev = resolve_device(device)
    ckpt = load_checkpoint(ckpt_path, dev)
    if not isinstance(ckpt.get("config"), dict) or "classes" not in ckpt:
        raise MedaugError(f"{folder}: not a generator folder (its checkpoint.pt has no generator config; a classifier run?); "
                          "pass the folder `medaug gen train --out` wrote")
    known = {f.name for f in dataclasses.fields(GenConfig)}
    cfg = GenConfig(**{**{k: v for k, v in ckpt["config"].items() if k in known}, "progress": False})
    model = build_model(cfg, len(ckpt["classes"]), dev, int(ckpt.get("channels", 1)))  # older checkpoints: gray
    try:
        model.load_state_dict(ckpt["model"], inference_only=True)
    except (KeyError, RuntimeError) as exc:
        raise MedaugError(f"{ckpt_path}: does not fit a {cfg.model} with its recorded options ({exc.__class__.__name__}; "
                          "e.g. trained under an older medaug's default network); train it again") from None
    return model, list(ckpt["classes"]), cfg


def check_sample_memory(per_class: int, num_classes: int, size: int) -> None:
    """Refuse a sample count whose images would not fit in memory: float32 samples, their copy, the
    noise and the uint8 images, [K * per_class, S, S] each (13 bytes a pixel)."""
    n = per_class * num_classes
    check_memory(n * size**2 * 13, f"--per-class {per_class}: {n} samples of {size} x {size} ({num_classes} classes)",
                 "sample fewer images per class (several --seed runs give more)")


def sample_per_class(model, num_classes: int, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [K * per_class, C, S, S] and int64 labels, class-major; deterministic given ``seed``."""
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    x = model.sample(labels, seed)
    return (x * 255).round().to(torch.uint8).numpy(), labels.numpy()


def preview(model, classes: list[str], path: Path, per_class: int = 8, seed: int = 0) -> None:
    from .quality import image_grid

    images, labels = sample_per_class(model, len(classes), per_class, seed)
    image_grid(images.reshape(len(classes), per_class, *images.shape[1:]), path, row_names=classes)


def write_samples(model_dir: str | Path, per_class: int, out: str | Path, seed: int = 0, device: str = "auto",
                  sheet: int = 32, overrides: dict | None = None, overwrite: bool = False) -> dict:
    """``medaug gen sample``: ``out/<class>/*.png`` (ImageFolder; gray or RGB PNGs as the generator's data),
    ``out/contact_<class>.png``, ``out/samples.json``.

    ``overrides``: sampling options of the model (e.g. ``guidance``, ``ddim_steps``, ``truncation``).
    """
    from ..train import left_behind

    if per_class < 1:
        raise MedaugError("--per-class must be >= 1")
    check_range("--seed", seed, Seed)
    model, classes, cfg = load_generator(model_dir, device)
    check_sample_memory(per_class, len(classes), cfg.size)
    if overrides:  # the options mechanism again: types, ranges and the rules between options
        model.opts = options_from(type(model.opts), {**dataclasses.asdict(model.opts), **overrides},
                                  f"gen sample -o ({cfg.model})", noun="option")
    data = Path(cfg.data).expanduser() if cfg.data else None
    out = output_folder(out, "samples", overwrite=overwrite, inputs=(data,) if data is not None and data.is_dir() else ())
    if overwrite:
        left_behind(out, ("samples.json",))
    if (out / "samples.json").is_file() and not overwrite:
        raise MedaugError(f"--out {out}: holds samples already (samples.json); --overwrite to replace them, or choose another --out")
    try:
        return _write_samples(model, classes, cfg, model_dir, per_class, out, seed, sheet, overrides)
    except BaseException:
        if not (out / "samples.json").is_file():
            remove_output(out)  # no half-written samples folder
        raise


def _write_samples(model, classes: list[str], cfg: GenConfig, model_dir, per_class: int, out: Path, seed: int, sheet: int,
                   overrides: dict | None) -> dict:
    from .quality import image_grid, write_image_folder

    t0 = time.time()
    images, labels = sample_per_class(model, len(classes), per_class, seed)
    out = write_image_folder(images, labels, classes, out)
    cols = min(per_class, sheet)
    for i, name in enumerate(classes):
        grid = images[labels == i][:cols]
        rows = max(1, int(math.ceil(len(grid) / 8)))
        pad = np.zeros((rows * 8 - len(grid), *grid.shape[1:]), np.uint8)
        image_grid(np.concatenate([grid, pad]).reshape(rows, 8, *grid.shape[1:]), out / f"contact_{name}.png",
                   title=f"{cfg.model} samples: {name} (seed {seed})")
    info = {"model_dir": str(model_dir), "model": cfg.model, "classes": classes, "per_class": per_class, "seed": seed,
            "size": cfg.size, "channels": int(images.shape[1]), "overrides": overrides or {}, "wall_s": round(time.time() - t0, 2)}
    write_json(out / "samples.json", info)
    return info
