"""Matplotlib figures written as PNG (Agg backend: no display needed).

Images come as uint8 [H, W] (gray) or [C, H, W] (C = 1 gray, 3 colour, the cache's layout) and are
shown as they are: gray in gray, colour in colour."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, path: Path) -> None:
    """Write ``fig`` to ``path`` as PNG (110 dpi, atomically) and close it."""
    from .io_utils import save_with

    try:
        save_with(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    finally:
        plt.close(fig)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """float [H, W, 3] in [0, 1] of a uint8 image [H, W] or [C, H, W] (a gray channel repeated)."""
    img = np.asarray(image).astype(np.float32) / 255.0
    if img.ndim == 3:
        img = img.transpose(1, 2, 0)
        return np.repeat(img, 3, -1) if img.shape[-1] == 1 else np.ascontiguousarray(img)
    return np.stack([img] * 3, -1)


def show(ax, image: np.ndarray) -> None:
    """``ax.imshow`` of a uint8 image [H, W] or [C, H, W]: gray in gray (0..255), colour in colour."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] == 3:
        ax.imshow(img.transpose(1, 2, 0))
    else:
        ax.imshow(img.reshape(img.shape[-2:]), cmap="gray", vmin=0, vmax=255)


def overlay(image: np.ndarray, keep: np.ndarray | None, roi: np.ndarray | None) -> np.ndarray:
    """RGB float [H, W, 3]: the image (uint8 [H, W] or [C, H, W]), erased pixels tinted red, the true
    finding outlined green."""
    rgb = as_rgb(image)
    if keep is not None:
        erased = keep == 0
        rgb[erased] = rgb[erased] * 0.35 + np.array([0.65, 0.0, 0.0])
    if roi is not None and roi.any():
        r = roi.astype(bool)
        edge = r & ~(np.roll(r, 1, 0) & np.roll(r, -1, 0) & np.roll(r, 1, 1) & np.roll(r, -1, 1))
        rgb[edge] = [0.0, 1.0, 0.0]
    return rgb


def mask_grid(images: np.ndarray, keeps: np.ndarray | None, rois: np.ndarray | None, path: Path, title: str = "") -> None:
    """Images uint8 [N, H, W] or [N, C, H, W] with keep-masks [N, H, W] (erased = red) and true regions (green)."""
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(1.6 * n, 1.9), squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.imshow(overlay(images[i], None if keeps is None else keeps[i], None if rois is None else rois[i]))
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def mask_rows(images: np.ndarray, rows: dict[str, np.ndarray | None], rois: np.ndarray | None, path: Path) -> None:
    """One row per method (its name on the left), the same images in every column."""
    names = list(rows)
    n = len(images)
    fig, axes = plt.subplots(len(names), n, figsize=(1.5 * n, 1.6 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        for c in range(n):
            ax = axes[r][c]
            keep = rows[name][c] if rows[name] is not None else None
            ax.imshow(overlay(images[c], keep, None if rois is None else rois[c]))
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.suptitle("kept pixels; erased in red; true finding outlined green", fontsize=9)
    save_figure(fig, path)


def learning_curves(histories: dict[str, list[list[dict]]], key: str, path: Path) -> None:
    """Validation ``key`` per epoch, one line per method, mean over seeds with a band."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, runs in histories.items():
        series = [[row.get(key, np.nan) for row in hist] for hist in runs if hist]
        if not series:
            continue
        length = max(map(len, series))
        arr = np.full((len(series), length), np.nan)
        for i, s in enumerate(series):
            arr[i, : len(s)] = s
        mean, std = np.nanmean(arr, 0), np.nanstd(arr, 0)
        x = np.arange(1, length + 1)
        ax.plot(x, mean, label=name)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def mask_history_grid(history: np.ndarray, images: np.ndarray, path: Path, max_epochs: int = 10) -> None:
    """Masks of fixed images over epochs; rows = epochs (subsampled, first and last kept).

    history uint8 {0, 1} [E, N, H, W] (keep-masks: erased pixels red) or float [E, N, H, W] in
    [0, 1] (noise masks: the image as the classifier saw it, i.e. ``0.5 + (x - 0.5) * m``); images
    uint8 [N, H, W] or [N, C, H, W].
    """
    soft = np.issubdtype(history.dtype, np.floating)
    e = len(history)
    pick = np.unique(np.linspace(0, e - 1, min(e, max_epochs)).round().astype(int))
    n = images.shape[0]
    fig, axes = plt.subplots(len(pick), n, figsize=(1.3 * n, 1.3 * len(pick)), squeeze=False)
    for r, ep in enumerate(pick):
        for c in range(n):
            ax = axes[r][c]
            if soft:
                seen = 0.5 + (as_rgb(images[c]) - 0.5) * history[ep][c].astype(np.float32)[..., None]
                ax.imshow(seen.clip(0, 1))
            else:
                ax.imshow(overlay(images[c], history[ep][c], None))
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"epoch {ep + 1}", fontsize=8)
    save_figure(fig, path)
