"""``medaug bench``: training-step throughput of each method, measured side by side in one process.

Each method gets a fresh classifier, its own ``setup`` and synthetic tensors of the requested
shape; warm-up steps are excluded, CUDA is synchronised around every timed window, the methods'
windows are interleaved round-robin, and the figure is the median images/s (source images, not
counting augmented copies) over repeated windows. Peak memory (CUDA) is each method's own: all
methods' models stay resident, and the peak counter is reset before each of its windows. Ratios
to ``cutout`` and ``none`` are what the speed targets in docs/performance.md are stated in, since
absolute numbers move with the machine. ``trained_vs_none`` compares images the classifier trains
on per second (counted by a hook in the first warm-up step: a 1:1 mix trains on two per source
image), i.e. what the augmentation itself costs beyond the extra classifier work.
"""

from __future__ import annotations

import dataclasses
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import __version__
from .config import TrainConfig
from .device import check_memory, place, resolve_device, seed_everything
from .errors import MedaugError
from .methods import create_method
from .models.classifiers import create_classifier


@dataclass
class BenchResult:
    method: str
    images_per_s: float
    step_ms: float
    peak_mem_mb: float | None
    windows: list[float]
    trained_per_source: float  #: images the classifier trains on per source image (1:1 mixes: 2)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def method_context(name: str, cfg: TrainConfig, options: dict, batch: int, channels_last: bool = False,
                   train_images: np.ndarray | None = None, channels: int = 0) -> tuple:
    """A fresh classifier and ``name``'s setup on random data of the config's shape: (method, ctx, x, y), x float
    [batch, C, S, S] in [0, 1] and y int64 [batch] on the config's device. ``channels``: C, 1 (gray) or 3 (colour);
    0 = the config's ``in_channels``, else 1. ``train_images`` (uint8 [N, C, S, S]) is what setups that read the
    training images see (default: the batch itself), e.g. as many as a real run has."""
    from .context import Context
    from .train import make_optimizer

    device = resolve_device(cfg.device)
    seed_everything(0)
    channels = channels or cfg.in_channels or 1
    cfg = dataclasses.replace(cfg, channels_last=channels_last, in_channels=cfg.in_channels or channels)
    model = place(create_classifier(cfg.model, cfg.in_channels, 2), device, channels_last)
    opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr)
    x = torch.rand(batch, channels, cfg.size, cfg.size, device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    images = (x * 255).to(torch.uint8).cpu().numpy() if train_images is None else train_images
    extras = {"train_images": images}  # for setups that read training images
    ctx = Context(model, opt, device, cfg, 2, torch.amp.GradScaler(device.type, enabled=False), extras=extras, channels=channels)
    method = create_method(name, options)
    method.setup(ctx)
    model.train()
    return method, ctx, x, y


def prepare_method(name: str, cfg: TrainConfig, options: dict, batch: int, warmup: int,
                   channels_last: bool = False, channels: int = 0) -> tuple[Callable[[], None], float]:
    """A fresh classifier and ``name``'s setup on random data of the config's shape (``channels``: see
    :func:`method_context`), warmed up.

    Returns ``step()``, one ``train_step`` of the method on that batch, and the number of images
    the classifier trains on (forward with gradient) per source image: 2 for the 1:1 mixes.
    """
    method, ctx, x, y = method_context(name, cfg, options, batch, channels_last, channels=channels)
    model = ctx.model

    def step() -> None:
        method.train_step(ctx, x, y)

    rows: list[int] = []  # classifier inputs that carry a gradient, i.e. images trained on
    hook = model.register_forward_pre_hook(lambda _, inputs: rows.append(len(inputs[0])) if torch.is_grad_enabled() else None)
    step()
    hook.remove()
    for _ in range(warmup - 1):
        step()
    return step, sum(rows) / batch


def bench_methods(names: list[str], cfg: TrainConfig, options: dict[str, dict], batch: int, warmup: int, steps: int,
                  windows: int, channels_last: bool = False, channels: int = 0) -> list[BenchResult]:
    """Median images/s of each method, its timed windows interleaved round-robin.

    Window k of every method runs before window k + 1 of any, so a slow spell of the machine
    (another process, thermal throttling) falls on all methods alike and the ratios stay fair.
    """
    device = resolve_device(cfg.device)
    prepared = {n: prepare_method(n, cfg, options.get(n, {}), batch, warmup, channels_last, channels) for n in names}
    rates: dict[str, list[float]] = {n: [] for n in names}
    peaks: dict[str, float] = {n: 0.0 for n in names}
    for _ in range(windows):
        for name, (step, _) in prepared.items():
            _sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            _sync(device)
            rates[name].append(batch * steps / (time.perf_counter() - t0))
            if device.type == "cuda":
                peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated(device) / 2**20)
    out = []
    for name in names:
        med = statistics.median(rates[name])
        out.append(BenchResult(name, med, 1000 * batch / med, peaks[name] if device.type == "cuda" else None, rates[name],
                               prepared[name][1]))
    return out


def loader_throughput(cache: str | Path, batch: int = 256, seconds: float = 3.0) -> float:
    """Images/s of reading shuffled batches from a prepared cache the way training does."""
    images = np.load(Path(cache) / "images.npy", mmap_mode="r")
    rng = np.random.default_rng(0)
    n, done, t0 = len(images), 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        idx = np.sort(rng.choice(n, size=min(batch, n), replace=False))
        x = torch.from_numpy(np.ascontiguousarray(images[idx]))
        x = (x.unsqueeze(1) if x.dim() == 3 else x).float().div_(255.0)  # gray caches are [N, S, S]
        done += x.shape[0]
    return done / (time.perf_counter() - t0)


def run_bench(methods: list[str], cfg: TrainConfig, options: dict[str, dict], batch: int, warmup: int = 3,
              steps: int = 5, windows: int = 5, channels_last: bool = False, data: str | None = None,
              channels: int = 0) -> dict:
    """Every method's throughput (:func:`bench_methods`) as a report dict. ``channels``: of the random images
    (0 = those of ``data``, a prepared cache, when given, else the config's ``in_channels``, else 1)."""
    for flag, value, least in (("--steps", steps, 1), ("--windows", windows, 1), ("--batch", batch, 2), ("--warmup", warmup, 0)):
        if value < least:
            raise MedaugError(f"{flag} {value}: must be >= {least}")
    if not methods:
        raise MedaugError("--methods: give at least one method, e.g. none,cutout")
    if channels not in (0, 1, 3):
        raise MedaugError(f"--channels {channels}: give 1 (gray) or 3 (colour)")
    if data:
        from .data.cache import cache_channels, is_cache, read_meta

        if not is_cache(data):
            raise MedaugError(f"--data {data}: not a prepared cache (no meta.json and images.npy); "
                              f"make one with `medaug data prepare DATASET --out {data}`")
        channels = channels or cache_channels(read_meta(Path(data)))
    channels = channels or cfg.in_channels or 1
    check_memory(2 * batch * channels * cfg.size**2 * 4,
                 f"--size {cfg.size} with --batch {batch}: a batch of {2 * batch} float32 images of "
                 f"{channels} x {cfg.size} x {cfg.size} (originals and augmented copies)",
                 "lower --size or --batch", resolve_device(cfg.device))
    results = bench_methods(methods, cfg, options, batch, warmup, steps, windows, channels_last, channels)
    by = {r.method: r.images_per_s for r in results}
    trained = {r.method: r.trained_per_source for r in results}
    device = resolve_device(cfg.device)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "medaug_version": __version__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "model": cfg.model, "size": cfg.size, "channels": channels, "batch": batch, "precision": cfg.precision,
        "methods": [
            {**asdict(r), "vs_none": r.images_per_s / by["none"] if "none" in by else None,
             "vs_cutout": r.images_per_s / by["cutout"] if "cutout" in by else None,
             "trained_vs_none": r.images_per_s * r.trained_per_source / (by["none"] * trained["none"]) if "none" in by else None}
            for r in results
        ],
    }
    if data:
        report["loader_images_per_s"] = loader_throughput(data)
    return report
