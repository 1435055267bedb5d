"""Decoding one image file into a float array, with one clear error per unreadable file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import MedaugError

Image.MAX_IMAGE_PIXELS = 200_000_000  # decompression-bomb guard; 10k x 10k radiographs are fine

PIL_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def load_image(path: str | Path) -> np.ndarray:
    """Decode ``path`` to float32 [H, W] in [0, 1] (gray; RGB/RGBA are converted to luminance)."""
    path = Path(path)
    if not path.is_file():
        raise MedaugError(f"{path}: file not found; re-run `medaug data check` on the dataset")
    if path.stat().st_size == 0:
        raise MedaugError(f"{path}: empty file (0 bytes); remove it or restore it from the source")
    suffix = path.suffix.lower()
    if suffix in PIL_SUFFIXES:
        return _load_pil(path)
    raise MedaugError(f"{path}: unsupported image type {suffix!r}; use PNG, JPEG, TIFF, DICOM or NIfTI")


def _load_pil(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                lo, hi = np.percentile(arr, [0.5, 99.5]) if arr.size else (0.0, 1.0)
                if hi <= lo:
                    hi = lo + 1.0
                return np.clip((arr - lo) / (hi - lo), 0, 1).astype(np.float32)
            if img.mode != "L":
                img = img.convert("L")  # RGB, RGBA (alpha dropped), palette
            return np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MedaugError(f"{path}: cannot decode image ({exc.__class__.__name__}: {exc}); the file is corrupt or not an image") from None


def resize(arr: np.ndarray, size: int, order: str = "area") -> np.ndarray:
    """Resize float [H, W] to [size, size] (anti-aliased; 'nearest' for masks)."""
    if arr.shape == (size, size):
        return arr
    img = Image.fromarray(arr.astype(np.float32), mode="F")
    resample = Image.Resampling.NEAREST if order == "nearest" else Image.Resampling.BOX
    if order != "nearest" and min(arr.shape) < size:
        resample = Image.Resampling.BILINEAR
    return np.asarray(img.resize((size, size), resample=resample), dtype=np.float32)


def load_sample(row, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Image and ROI of one index row, resized: (uint8 [size, size], uint8 0/1 [size, size] or None)."""
    image = resize(load_image(row["path"]), size)
    roi = None
    if row.get("roi", ""):
        roi = (resize(load_image(row["roi"]), size, order="nearest") > 0).astype(np.uint8)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), roi
