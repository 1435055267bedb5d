"""Decode once into uint8 memory maps; training and evaluation read only arrays.

A cache folder holds ``images.npy`` (uint8 [N, S, S]), ``rois.npy`` (uint8 0/1 [N, S, S], only
when the dataset has ground-truth regions), ``manifest.csv`` (one row per cached image: the
index columns plus source size and mtime) and ``meta.json`` (fingerprint, size, classes). It is
written into a temporary folder and renamed into place, so an interrupted build leaves no
half-written cache; it is reused while the fingerprint of the sources matches.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MedaugError
from ..progress import progress_bar
from .index import DataIndex, read_index
from .io import load_sample, source_file
from .splits import carve_validation, group_split, k_shot

CACHE_VERSION = 1


def default_cache_root() -> Path:
    return Path(os.environ.get("MEDAUG_CACHE", Path.home() / ".cache" / "medaug"))


def fingerprint(index: DataIndex, size: int) -> tuple[str, pd.DataFrame]:
    """Hash of every source file's path, byte size and mtime plus the image size and index columns."""
    frame = index.frame.copy()
    stats = [os.stat(source_file(p)) for p in frame["path"]]  # an npz item: its archive
    frame["bytes"] = [s.st_size for s in stats]
    frame["mtime_ns"] = [s.st_mtime_ns for s in stats]
    h = hashlib.sha256(f"v{CACHE_VERSION}|{size}|{index.format}|{index.classes}".encode())
    h.update(pd.util.hash_pandas_object(frame.astype(str), index=False).values.tobytes())
    return h.hexdigest()[:16], frame


def cache_dir_for(index: DataIndex, size: int) -> Path:
    key = hashlib.sha256(f"{index.root.resolve()}|{index.format}|{sorted(index.info.items())}".encode()).hexdigest()[:12]
    return default_cache_root() / f"{index.root.name}-{key}" / f"px{size}"


def build_cache(index: DataIndex, size: int, out: Path | None = None, strict: bool = True, progress: bool = True) -> Path:
    """Decode ``index`` at ``size`` px into ``out`` (reused when unchanged). Returns the folder.

    ``strict``: an unreadable file is an error (the message names it); otherwise it is skipped,
    counted in meta.json and listed in ``skipped.csv``.
    """
    out = Path(out) if out is not None else cache_dir_for(index, size)
    fp, frame = fingerprint(index, size)
    meta_path = out / "meta.json"
    if meta_path.is_file():
        try:
            if json.loads(meta_path.read_text()).get("fingerprint") == fp:
                return out
        except json.JSONDecodeError:
            pass  # rebuild below
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        n = len(frame)
        images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(n, size, size))
        has_roi = bool((frame["roi"] != "").any())
        rois = np.lib.format.open_memmap(tmp / "rois.npy", mode="w+", dtype=np.uint8, shape=(n, size, size)) if has_roi else None
        ok, skipped = [], []
        for i, (_, row) in enumerate(progress_bar(frame.iterrows(), total=n, description="decoding images", enabled=progress)):
            try:
                image, roi = load_sample(row, size)
            except MedaugError as exc:
                if strict:
                    raise MedaugError(f"{exc} (or run `medaug data prepare` to skip unreadable files)") from None
                skipped.append({"path": row["path"], "error": str(exc)})
                continue
            j = len(ok)
            images[j] = image
            if rois is not None:
                rois[j] = roi if roi is not None else 0
            ok.append(i)
        images.flush()
        del images
        if rois is not None:
            rois.flush()
            del rois
        kept = frame.iloc[ok].reset_index(drop=True)
        if len(kept) < n:  # shrink the arrays to the decoded rows
            for name in ("images", "rois") if has_roi else ("images",):
                arr = np.load(tmp / f"{name}.npy", mmap_mode="r")[: len(kept)]
                np.save(tmp / f"{name}.part.npy", arr)
                os.replace(tmp / f"{name}.part.npy", tmp / f"{name}.npy")
        if kept.empty:
            raise MedaugError(f"{index.root}: none of the {n} images could be decoded; see `medaug data check`")
        kept.to_csv(tmp / "manifest.csv", index=False)
        pd.DataFrame(skipped, columns=["path", "error"]).to_csv(tmp / "skipped.csv", index=False)
        meta = dict(
            fingerprint=fp, size=size, classes=index.classes, format=index.format, root=str(index.root),
            n=len(kept), skipped=len(skipped), has_roi=has_roi, version=CACHE_VERSION,
        )
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@dataclass
class ArraySplit:
    """One split in memory. images uint8 [N, S, S]; labels int64 [N]; rois uint8 [N, S, S] or None."""

    images: np.ndarray
    labels: np.ndarray
    rois: np.ndarray | None
    groups: np.ndarray
    studies: np.ndarray
    paths: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    train: ArraySplit
    valid: ArraySplit
    test: ArraySplit
    classes: list[str]
    fingerprint: str
    cache: Path
    info: dict = field(default_factory=dict)


def parse_ratios(text: str) -> dict[str, float]:
    """'60:25:15' -> {'train': 60, 'valid': 25, 'test': 15} (any positive numbers; only ratios count)."""
    try:
        values = [float(v) for v in str(text).split(":")]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) <= 0:
        raise MedaugError(f"--split-ratios {text!r}: give three positive numbers train:valid:test, e.g. 60:25:15")
    return dict(zip(("train", "valid", "test"), values))


def assign_splits(manifest: pd.DataFrame, val_fraction: float, seed: int, ratios: str = "60:25:15") -> pd.DataFrame:
    """Fill in splits: unsplit -> ``ratios`` patient-disjoint; train+test only -> carve valid from train."""
    frame = manifest.copy()
    splits = set(frame["split"].fillna(""))
    if splits <= {""}:
        frame["split"] = group_split(frame, parse_ratios(ratios), seed)
    elif "valid" not in splits:
        frame = carve_validation(frame, val_fraction, seed)
    for name in ("train", "valid", "test"):
        if not (frame["split"] == name).any():
            raise MedaugError(f"the {name} split is empty after splitting; the dataset is too small or has no {name} images")
    return frame


def cached(data: str | Path, size: int, fmt: str = "auto", cache: str | Path | None = None, progress: bool = True,
           **reader_options) -> Path:
    """The cache folder holding ``data`` at ``size`` px: a prepared cache given directly, else built or reused."""
    data = Path(data)
    if (data / "meta.json").is_file() and (data / "images.npy").is_file():
        return data
    return build_cache(read_index(data, fmt, **reader_options), size, cache, strict=True, progress=progress)


def load_dataset(
    data: str | Path,
    size: int = 64,
    fmt: str = "auto",
    cache: str | Path | None = None,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    n_shot: int | None = None,
    shot_seed: int = 0,
    progress: bool = True,
    split_ratios: str = "60:25:15",
    **reader_options,
) -> Dataset:
    """Read, cache and split a dataset: the one entry point training uses."""
    folder = cached(data, size, fmt, cache, progress, **reader_options)
    meta = json.loads((folder / "meta.json").read_text())
    if meta["size"] != size:
        raise MedaugError(f"{folder}: cache holds {meta['size']} px images but --size is {size}; prepare it again at {size}")
    manifest = pd.read_csv(folder / "manifest.csv", dtype={"group": str, "study": str, "split": str, "roi": str}, keep_default_na=False)
    frame = assign_splits(manifest, val_fraction, split_seed, split_ratios)
    if n_shot:
        frame = k_shot(frame, n_shot, shot_seed, meta["classes"])
    images = np.load(folder / "images.npy", mmap_mode="r")
    rois = np.load(folder / "rois.npy", mmap_mode="r") if meta["has_roi"] else None

    def take(name: str) -> ArraySplit:
        idx = frame.index[frame["split"] == name].to_numpy()
        rows = frame.loc[idx]
        return ArraySplit(
            images=np.ascontiguousarray(images[idx]),
            labels=rows["label"].to_numpy(np.int64),
            rois=None if rois is None else np.ascontiguousarray(rois[idx]),
            groups=rows["group"].to_numpy(str),
            studies=rows["study"].to_numpy(str),
            paths=rows["path"].to_numpy(str),
        )

    return Dataset(take("train"), take("valid"), take("test"), list(meta["classes"]), meta["fingerprint"], folder, info=meta)
