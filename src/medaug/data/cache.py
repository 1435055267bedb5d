"""Decode once into uint8 memory maps; training and evaluation read only arrays.

A cache folder holds ``images.npy`` (uint8 [N, S, S]), ``rois.npy`` (uint8 0/1 [N, S, S], only
when the dataset has ground-truth regions), ``manifest.csv`` (one row per cached image: the
index columns plus source size, mtime and content hash) and ``meta.json`` (fingerprint, size, classes). It is
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

from ..config import parse_ratios
from ..errors import MedaugError
from ..io_utils import file_digest, install, output_folder, tmp_sibling, write_json
from ..progress import progress_bar
from .duplicates import CONFLICT, duplicate_groups
from .index import read_index
from .table import DataIndex
from .io import load_sample, source_file
from .splits import carve_validation, group_split, k_shot

CACHE_VERSION = 1


def default_cache_root() -> Path:
    return Path(os.environ.get("MEDAUG_CACHE", Path.home() / ".cache" / "medaug"))


def content_hashes(stats: dict[str, os.stat_result]) -> dict[str, str]:
    """SHA-256 (16 hex) of each file's bytes (``stats``: file -> its os.stat), memoised in the cache root
    per (path, size, mtime), one entry per file (a file's older versions are dropped).

    A file whose size and mtime are unchanged is not read again; a copy with new times is re-read once
    and, its bytes being the same, keeps its hash (so runs on re-copied data stay resumable).
    """
    memo_path = default_cache_root() / "file-hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
        memo = memo if isinstance(memo, dict) else {}
    except (OSError, ValueError):
        memo = {}
    latest = {key.rsplit("|", 2)[0]: key for key in memo}  # one entry per file: its newest version
    out, added = {}, False
    for f, st in stats.items():
        real = os.path.realpath(f)
        key = f"{real}|{st.st_size}|{st.st_mtime_ns}"
        if key not in memo:
            memo.pop(latest.get(real, ""), None)  # the file's older version: never looked up again
            memo[key], latest[real] = file_digest(f, "sha256")[:16], key
            added = True
        out[f] = memo[key]
    if added:  # best effort: a memo that cannot be written only costs a re-read next time
        try:
            write_json(memo_path, memo)
        except (OSError, MedaugError):
            pass
    return out


def fingerprint(index: DataIndex, size: int) -> tuple[str, pd.DataFrame]:
    """Hash of every source file's path and content plus the image size and index columns.

    The returned frame also carries each source's byte size and mtime (the cache's manifest).
    """
    frame = index.frame.copy()
    files = [source_file(p) for p in frame["path"]]  # an npz item: its archive
    stats = {f: os.stat(f) for f in dict.fromkeys(files)}  # each distinct file once
    frame["bytes"] = [stats[f].st_size for f in files]
    frame["mtime_ns"] = [stats[f].st_mtime_ns for f in files]
    hashes = content_hashes(stats)
    frame["sha256"] = [hashes[f] for f in files]
    h = hashlib.sha256(f"v{CACHE_VERSION}|{size}|{index.format}|{index.classes}".encode())
    h.update(pd.util.hash_pandas_object(frame.drop(columns=["mtime_ns"]).astype(str), index=False).values.tobytes())
    return h.hexdigest()[:16], frame


#: DataIndex.info entries that describe the data without choosing what is read (left out of the cache folder's name)
INFO_NOT_KEY = ("orphan_masks",)


def cache_dir_for(index: DataIndex, size: int) -> Path:
    info = sorted((k, v) for k, v in index.info.items() if k not in INFO_NOT_KEY)
    key = hashlib.sha256(f"{index.root.resolve()}|{index.format}|{info}".encode()).hexdigest()[:12]
    return default_cache_root() / f"{index.root.name}-{key}" / f"px{size}"


def build_cache(index: DataIndex, size: int, out: Path | None = None, strict: bool = True, progress: bool = True,
                overwrite: bool = False) -> Path:
    """Decode ``index`` at ``size`` px into ``out`` (reused when unchanged). Returns the folder.

    ``strict``: an unreadable file is an error (the message names it); otherwise it is skipped,
    counted in meta.json and listed in ``skipped.csv``. ``out`` must be a new or empty folder or a
    medaug cache; a cache of another dataset, format or size there is replaced only with ``overwrite``
    (a cache of the same dataset whose sources changed is rebuilt).
    """
    explicit = out is not None
    out = Path(out) if explicit else cache_dir_for(index, size)
    output_folder(out, "cache", inputs=(index.root, index.source or index.root), flag="--out" if explicit else "the cache folder ($MEDAUG_CACHE)")
    fp, frame = fingerprint(index, size)
    meta_path = out / "meta.json"
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text())
            old = old if isinstance(old, dict) else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = {}  # rebuild below: the folder is medaug's cache
        if old.get("fingerprint") == fp:
            return out
        same = (old.get("root"), old.get("format"), old.get("size")) == (str(index.root), index.format, size)
        if explicit and old and not same and not overwrite:
            raise MedaugError(f"--out {out}: holds the cache of {old.get('root')} ({old.get('format')}, {old.get('size')} px), "
                              f"not of {index.root} at {size} px; --overwrite to replace it, or choose another --out")
    tmp = tmp_sibling(out)
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
        install(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@dataclass
class ArraySplit:
    """One split in memory. images uint8 [N, S, S]; labels int64 [N]; rois uint8 [N, S, S] or None;
    has_roi bool [N] (the image has a mask file; an all-zero roi with it is an empty mask) or None."""

    images: np.ndarray
    labels: np.ndarray
    rois: np.ndarray | None
    groups: np.ndarray
    studies: np.ndarray
    paths: np.ndarray
    has_roi: np.ndarray | None = None

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


def assign_splits(manifest: pd.DataFrame, val_fraction: float, seed: int, ratios: str = "60:25:15", where: str = "the dataset") -> pd.DataFrame:
    """Fill in splits: unsplit -> ``ratios`` patient-disjoint; train+test only -> carve valid from train."""
    frame = manifest.copy()
    splits = set(frame["split"].fillna(""))
    if splits <= {""}:
        frame["split"] = group_split(frame, parse_ratios(ratios), seed)
    elif "valid" not in splits:
        frame = carve_validation(frame, val_fraction, seed)
    for name in ("train", "valid", "test"):
        if not (frame["split"] == name).any():
            raise MedaugError(f"{where}: the {name} split is empty after splitting ({len(frame)} images); the dataset is too "
                              f"small or has no {name} images (add images, or change --split-ratios / val_fraction)")
    return frame


CACHE_META = {"fingerprint": str, "size": int, "classes": list, "n": int, "has_roi": bool}


def read_meta(folder: Path) -> dict:
    """A cache's meta.json, checked: one line naming the file when it is unreadable or lacks a field."""
    path = Path(folder) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MedaugError(f"{path}: unreadable cache metadata ({exc.__class__.__name__}); prepare the cache again") from None
    bad = [k for k, t in CACHE_META.items() if not isinstance(meta, dict) or not isinstance(meta.get(k), t)]
    if bad:
        raise MedaugError(f"{path}: bad cache metadata (missing or wrong type: {', '.join(bad)}); prepare the cache again")
    return meta


def is_cache(path: str | Path) -> bool:
    """Whether ``path`` is a prepared cache folder (meta.json and images.npy)."""
    return (Path(path) / "meta.json").is_file() and (Path(path) / "images.npy").is_file()


def cached(data: str | Path, size: int, fmt: str = "auto", cache: str | Path | None = None, progress: bool = True,
           **reader_options) -> Path:
    """The cache folder holding ``data`` at ``size`` px: a prepared cache given directly, else built or reused.

    ``data`` may be ``medmnist:FLAG`` (the published file of the nearest size >= ``size``, fetched when missing).
    """
    from .medmnist_hub import resolve

    data = resolve(data, size)
    if is_cache(data):
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
    meta = read_meta(folder)
    if meta["size"] != size:
        raise MedaugError(f"{folder}: cache holds {meta['size']} px images but --size is {size}; prepare it again at {size}")
    try:
        manifest = pd.read_csv(folder / "manifest.csv", dtype={"group": str, "study": str, "split": str, "roi": str, "sha256": str},
                               keep_default_na=False)
        if not {"label", "split", "group", "study", "path"} <= set(manifest.columns) or len(manifest) != meta["n"]:
            raise ValueError(f"{len(manifest)} rows with columns {', '.join(manifest.columns)}")
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MedaugError(f"{folder / 'manifest.csv'}: does not match the cache ({exc}); prepare the cache again") from None
    frame = assign_splits(manifest, val_fraction, split_seed, split_ratios, where=str(data))
    if n_shot:
        frame = k_shot(frame, n_shot, shot_seed, meta["classes"])
    classes = list(meta["classes"])
    present = set(frame.loc[frame["split"] == "train", "label"])
    missing = [c for i, c in enumerate(classes) if i not in present]
    if missing:
        where = sorted(set(frame.loc[frame["label"].isin([classes.index(c) for c in missing]), "split"]))
        raise MedaugError(f"{data}: class(es) {', '.join(map(repr, missing))} have no training images "
                          f"(only in {', '.join(where) or 'no split'}); add training images of them or remove the class")
    images = _load_array(folder, "images", meta.get("n"), size)
    rois = _load_array(folder, "rois", meta.get("n"), size) if meta["has_roi"] else None

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
            has_roi=None if rois is None or "roi" not in rows else (rows["roi"] != "").to_numpy(bool),
        )

    train, valid, test = take("train"), take("valid"), take("test")
    conflicts = [d for d in duplicate_groups(manifest, "sha256") if d.kind == CONFLICT]
    return Dataset(train, valid, test, classes, meta["fingerprint"], folder,
                   info={**meta, "warnings": leak_warnings(train, test), "label_conflicts": conflicts})


def _pixel_hashes(images: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(np.ascontiguousarray(img).tobytes(), digest_size=12).digest() for img in images]


def leak_warnings(train: ArraySplit, test: ArraySplit) -> list[str]:
    """A warning when test images are pixel-identical (after decoding and resizing) to training images."""
    seen = dict(zip(_pixel_hashes(train.images), train.paths))
    dup = [(p, seen[h]) for h, p in zip(_pixel_hashes(test.images), test.paths) if h in seen]
    if not dup:
        return []
    return [f"{len(dup)} test image(s) identical to training images, e.g. {dup[0][0]} = {dup[0][1]}: the test score is "
            "optimistic; remove the duplicates (`medaug data check` lists them)"]


def _load_array(folder: Path, name: str, n: int | None, size: int) -> np.ndarray:
    """A cache array, memory-mapped and checked against meta.json: one line when truncated or the wrong shape."""
    path = folder / f"{name}.npy"
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise MedaugError(f"{path}: unreadable cache array ({exc.__class__.__name__}: {exc}); "
                          "prepare the cache again (`medaug data prepare ... --overwrite`)") from None
    if arr.ndim != 3 or arr.shape[1:] != (size, size) or (n is not None and arr.shape[0] != n) or arr.dtype != np.uint8:
        raise MedaugError(f"{path}: holds {arr.dtype} {list(arr.shape)}, expected uint8 [{n}, {size}, {size}] (meta.json); "
                          "prepare the cache again (`medaug data prepare ... --overwrite`)")
    return arr
