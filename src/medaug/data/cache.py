"""Decode once into uint8 memory maps; training and evaluation read only arrays.

A cache folder holds ``images.npy`` (uint8 [N, S, S] for gray data, [N, 3, S, S] for colour),
``rois.npy`` (uint8 0/1 [N, S, S], only when the dataset has ground-truth regions), ``manifest.csv``
(one row per cached image: the index columns plus source size, mtime and content hash) and
``meta.json`` (fingerprint, size, classes, channels). It is written into a temporary folder and
renamed into place, so an interrupted build leaves no half-written cache; it is reused while the
fingerprint of the sources matches.

The channel count is the data's: 1 when every image is gray, else 3 (a gray image among colour ones
is repeated to RGB; meta.json counts them in ``gray_in_colour``). A cache written before medaug read
colour (meta.json without ``channels``) holds gray images: given directly as ``--data`` it loads as
such; an automatic cache of that layout is decoded again once, giving the same arrays for gray data.
In memory (:class:`ArraySplit`) images are always uint8 [N, C, S, S].
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import parse_ratios
from ..device import check_disk, check_memory
from ..errors import MedaugError
from ..io_utils import (file_digest, install, output_folder, preallocate, remove_output, tmp_sibling, vouch_layout,
                        write_json, writing)
from ..progress import progress_bar
from .classes import relabel
from .duplicates import CONFLICT, duplicate_groups
from .index import read_index
from .table import DataIndex
from .io import load_sample, source_file
from .splits import carve_validation, group_split, k_shot

CACHE_VERSION = 1


def default_cache_root() -> Path:
    """$MEDAUG_CACHE (default ~/.cache/medaug); one that is a file (or lies below one) is refused."""
    root = Path(os.environ.get("MEDAUG_CACHE") or Path.home() / ".cache" / "medaug").expanduser()
    for cand in [*reversed(root.parents), root]:
        if os.path.lexists(cand) and not cand.is_dir():
            raise MedaugError(f"MEDAUG_CACHE {root}: {cand} is a file, not a folder; set MEDAUG_CACHE to a folder "
                              "(or unset it for ~/.cache/medaug)")
    return root


def check_cache_root(inputs: tuple | list) -> Path:
    """The cache root, refused when it lies inside one of the dataset folders ``inputs`` (prepared caches are
    not datasets): medaug's caches, locks and hash memo there would be read as part of the data."""
    root = default_cache_root()
    full = root.resolve()
    for src in inputs:
        src_full = Path(src).expanduser().resolve()
        if src_full.is_dir() and not is_cache(src_full) and (full == src_full or full.is_relative_to(src_full)):
            raise MedaugError(f"MEDAUG_CACHE {root}: lies inside the dataset {src}; set MEDAUG_CACHE to a folder outside "
                              "the data (medaug writes its caches and locks there, which would be read as data)")
    return root


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
            write_json(memo_path, memo, overwrite=True)  # medaug's own memo, outside any claimed folder
        except (OSError, MedaugError):
            pass
    return out


def _stat_file(path: str, root: Path) -> os.stat_result:
    """``os.stat`` of a file the index lists, or one line: missing, a folder, unreadable."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise MedaugError(f"{path}: listed by the dataset {root} but {exc.strerror.lower()}; restore the file or remove it "
                          "from the dataset (`medaug data check` lists the problems)") from None
    if stat.S_ISDIR(st.st_mode):
        raise MedaugError(f"{path}: listed as an image by the dataset {root} but is a folder; list image files only")
    return st


def fingerprint(index: DataIndex, size: int) -> tuple[str, pd.DataFrame]:
    """Hash of every source file's path and content plus the image size and index columns.

    The returned frame also carries each source's byte size and mtime (the cache's manifest).
    """
    frame = index.frame.copy()
    files = [source_file(p) for p in frame["path"]]  # an npz item: its archive
    stats = {f: _stat_file(f, index.root) for f in dict.fromkeys(files)}  # each distinct file once
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
                overwrite: bool = False, flag: str = "--out") -> Path:
    """Decode ``index`` at ``size`` px into ``out`` (reused when unchanged). Returns the folder.

    ``strict``: an unreadable file is an error (the message names it); otherwise it is skipped,
    counted in meta.json and listed in ``skipped.csv``. ``out`` must be a new or empty folder or a
    medaug cache; a cache of another dataset, format or size there is replaced only with ``overwrite``
    (a cache of the same dataset whose sources changed is rebuilt).
    """
    explicit = out is not None
    if not explicit:
        check_cache_root((index.root, index.source or index.root))
    out = Path(out) if explicit else cache_dir_for(index, size)
    # before claiming --out: decoding holds a few float64 copies of one image; the arrays are uint8 [N, S, S] on disk
    check_memory(40 * size**2, f"--size {size}: decoding one {size} x {size} image (float64 copies)", "lower --size")
    check_disk(len(index.frame) * size**2 * (2 if (index.frame["roi"] != "").any() else 1), out.parent,
               f"--size {size}: the cache of {len(index.frame)} images of {size} x {size} (uint8)", "lower --size or free disk space")
    output_folder(out, "cache", inputs=(index.root, index.source or index.root), flag=flag if explicit else "the cache folder ($MEDAUG_CACHE)")
    fp, frame = fingerprint(index, size)
    meta_path = out / "meta.json"
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text())
            old = old if isinstance(old, dict) else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = {}  # rebuild below: the folder is medaug's cache
        if old.get("fingerprint") == fp and "channels" in old:  # without: the gray-only layout, decoded again
            return out
        same = (old.get("root"), old.get("format"), old.get("size")) == (str(index.root), index.format, size)
        if explicit and old and not same and not overwrite:
            raise MedaugError(f"{flag} {out}: holds the cache of {old.get('root')} ({old.get('format')}, {old.get('size')} px), "
                              f"not of {index.root} at {size} px; --overwrite to replace it, or choose another {flag}")
        if not explicit:  # medaug's own cache root, a folder name medaug chose: an older medaug's cache is decoded again
            vouch_layout(out, "cache")
    tmp = tmp_sibling(out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with writing(out):
            _build(index, size, out, tmp, frame, fp, strict, progress)
    except BaseException:
        if not (out / "meta.json").is_file():
            remove_output(out)  # a new cache folder that got nothing: not left behind
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _build(index: DataIndex, size: int, out: Path, tmp: Path, frame: pd.DataFrame, fp: str, strict: bool,
           progress: bool) -> None:
    """Decode into the temporary folder ``tmp``, then install it as ``out``."""
    tmp.mkdir(parents=True)
    n = len(frame)
    images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(n, size, size))
    preallocate(tmp / "images.npy")  # a full disk fails here, not as a crash while decoding
    has_roi = bool((frame["roi"] != "").any())
    rois = np.lib.format.open_memmap(tmp / "rois.npy", mode="w+", dtype=np.uint8, shape=(n, size, size)) if has_roi else None
    if rois is not None:
        preallocate(tmp / "rois.npy")
    gray = np.zeros(n, bool)  # which decoded rows were gray (counted once the cache turns colour)
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
        gray[j] = image.ndim == 2
        if image.ndim == 3 and images.ndim == 3:  # the first colour image: the cache becomes [N, 3, S, S]
            images = _to_colour(images, j, tmp / "images.npy")
        images[j] = image.transpose(2, 0, 1) if image.ndim == 3 else image  # a gray image broadcasts over RGB
        if rois is not None:
            rois[j] = roi if roi is not None else 0
        ok.append(i)
    channels = 1 if images.ndim == 3 else 3
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
        n=len(kept), skipped=len(skipped), has_roi=has_roi, version=CACHE_VERSION, channels=channels,
        gray_in_colour=int(gray[: len(kept)].sum()) if channels == 3 else 0,
    )
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    install(tmp, out)


def _to_colour(gray: np.memmap, rows: int, path: Path) -> np.memmap:
    """The cache's image array as colour: a new uint8 [N, 3, S, S] memory map at ``path`` holding the first
    ``rows`` gray images repeated over the channels (the gray map is dropped)."""
    n, s = gray.shape[0], gray.shape[1]
    part = path.with_name("images.gray.npy")
    gray.flush()
    del gray
    os.replace(path, part)
    old = np.load(part, mmap_mode="r")
    colour = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 3, s, s))
    preallocate(path)
    for i in range(0, rows, 1024):
        colour[i : min(rows, i + 1024)] = old[i : min(rows, i + 1024), None]
    del old
    part.unlink()
    return colour


@dataclass
class ArraySplit:
    """One split in memory. images uint8 [N, C, S, S] (C = 1 gray, 3 colour; [N, S, S] is taken as gray and
    given its channel axis); labels int64 [N]; rois uint8 [N, S, S] or None; has_roi bool [N] (the image has a
    mask file; an all-zero roi with it is an empty mask) or None."""

    images: np.ndarray
    labels: np.ndarray
    rois: np.ndarray | None
    groups: np.ndarray
    studies: np.ndarray
    paths: np.ndarray
    has_roi: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.ndim == 3:
            self.images = self.images.reshape(len(self.images), 1, *self.images.shape[1:])  # a view

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        """1 (gray) or 3 (colour)."""
        return int(self.images.shape[1])


@dataclass
class Dataset:
    train: ArraySplit
    valid: ArraySplit
    test: ArraySplit
    classes: list[str]
    fingerprint: str
    cache: Path
    info: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        """The images' channel count: 1 (gray) or 3 (colour), as the data has it."""
        return self.train.channels


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


def cache_channels(meta: dict) -> int:
    """A cache's channel count from its meta.json: 1 or 3 (1 for a cache written before medaug read colour)."""
    return int(meta.get("channels", 1))


def read_meta(folder: Path) -> dict:
    """A cache's meta.json, checked: one line naming the file when it is unreadable or lacks a field."""
    path = Path(folder) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MedaugError(f"{path}: unreadable cache metadata ({exc.__class__.__name__}); prepare the cache again") from None
    bad = [k for k, t in CACHE_META.items() if not isinstance(meta, dict) or not isinstance(meta.get(k), t)]
    if isinstance(meta, dict) and meta.get("channels", 1) not in (1, 3):
        bad.append("channels")
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
    return build_cache(read_index(data, fmt, **reader_options), size, cache, strict=True, progress=progress, flag="--cache")


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
    classes: str = "",
    **reader_options,
) -> Dataset:
    """Read, cache and split a dataset: the one entry point training uses.

    ``classes``: a class mapping (``--classes``, :mod:`medaug.data.classes`) applied to the labels after the cache and
    the split (so every mapping of a dataset shares one cache and one patient split) and before k-shot sampling
    (``n_shot`` images per new class).
    """
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
    names, mapped = list(meta["classes"]), {}
    if classes:
        frame, names, mapped = relabel(frame, classes, names, where=str(meta.get("root") or data))
    if n_shot:
        frame = k_shot(frame, n_shot, shot_seed, names)
    present = set(frame.loc[frame["split"] == "train", "label"])
    missing = [c for i, c in enumerate(names) if i not in present]
    if missing:
        where = sorted(set(frame.loc[frame["label"].isin([names.index(c) for c in missing]), "split"]))
        raise MedaugError(f"{data}: class(es) {', '.join(map(repr, missing))} have no training images "
                          f"(only in {', '.join(where) or 'no split'}); add training images of them or remove the class")
    images = _load_array(folder, "images", meta.get("n"), size, cache_channels(meta))
    rois = _load_array(folder, "rois", meta.get("n"), size) if meta["has_roi"] else None

    def take(name: str) -> ArraySplit:
        idx = frame.index[frame["split"] == name].to_numpy()
        rows = frame.loc[idx]
        return ArraySplit(
            images=np.ascontiguousarray(images[idx]),  # gray [n, S, S]: given its channel axis by ArraySplit
            labels=rows["label"].to_numpy(np.int64),
            rois=None if rois is None else np.ascontiguousarray(rois[idx]),
            groups=rows["group"].to_numpy(str),
            studies=rows["study"].to_numpy(str),
            paths=rows["path"].to_numpy(str),
            has_roi=None if rois is None or "roi" not in rows else (rows["roi"] != "").to_numpy(bool),
        )

    train, valid, test = take("train"), take("valid"), take("test")
    conflicts = [d for d in duplicate_groups(manifest, "sha256") if d.kind == CONFLICT]  # of the source classes
    return Dataset(train, valid, test, names, meta["fingerprint"], folder,
                   info={**meta, **mapped, "warnings": leak_warnings(train, test), "label_conflicts": conflicts})


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


def _load_array(folder: Path, name: str, n: int | None, size: int, channels: int = 1) -> np.ndarray:
    """A cache array, memory-mapped and checked against meta.json: one line when truncated or the wrong shape.

    uint8 [N, S, S] (gray images, ROIs) or, with ``channels`` = 3, [N, 3, S, S]."""
    path = folder / f"{name}.npy"
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise MedaugError(f"{path}: unreadable cache array ({exc.__class__.__name__}: {exc}); "
                          "prepare the cache again (`medaug data prepare ... --overwrite`)") from None
    shape = (size, size) if channels == 1 else (channels, size, size)
    if arr.shape[1:] != shape or (n is not None and arr.shape[0] != n) or arr.dtype != np.uint8:
        raise MedaugError(f"{path}: holds {arr.dtype} {list(arr.shape)}, expected uint8 {[n, *shape]} (meta.json); "
                          "prepare the cache again (`medaug data prepare ... --overwrite`)")
    return arr
