"""MedMNIST: one ``.npz`` archive (``pneumoniamnist.npz``, ``pneumoniamnist_64.npz``, ...) with the arrays
``{train,val,test}_images`` (uint8 [N, H, W] gray or [N, H, W, 3] RGB, kept in colour) and
``{train,val,test}_labels`` ([N, 1] or [N] class indices).

``root`` is the .npz file or a folder holding exactly one. Class names come from ``classes.txt``
beside it (one name per line, in label order), from a sidecar ``<name>.json`` holding MedMNIST's
INFO entry (``{"label": {"0": "normal", ...}}``), or from the ``medmnist`` package's INFO for the
file's name when the package is installed; otherwise they are "0", "1", .... The images stay
in the archive: each index path is ``<file.npz>::<array>::<index>`` (see :func:`medaug.data.io.npz_item`).
Multi-label sets (ChestMNIST: labels [N, 14]) and 3D sets are not supported. Splits: train, val
(valid) and test as published; there are no patient ids, so each image is its own group.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import MedaugError
from ..table import DataIndex, register_reader
from ..io import npz_header, npz_item

SPLITS = {"train": "train", "val": "valid", "test": "test"}


def _npz_file(root: Path) -> Path | None:
    if root.is_file() and root.suffix.lower() == ".npz":
        return root
    if root.is_dir():
        found = sorted(p for p in root.glob("*.npz") if not p.name.startswith(".") and p.is_file())
        if len(found) == 1:
            return found[0]
    return None


def _members(npz: Path) -> set[str]:
    try:
        with zipfile.ZipFile(npz) as zf:
            return {n.removesuffix(".npy") for n in zf.namelist()}
    except (zipfile.BadZipFile, OSError):
        return set()


def looks_like_medmnist(root: Path) -> bool:
    npz = _npz_file(root)
    return npz is not None and {"train_images", "train_labels"} <= _members(npz)


def _class_names(npz: Path, n: int) -> list[str]:
    txt = npz.parent / "classes.txt"
    if txt.is_file():
        names = [line.strip() for line in txt.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(names) < n:
            raise MedaugError(f"{txt}: names {len(names)} class(es) but {npz.name} has labels 0..{n - 1}; "
                              "write one name per line, in label order")
        if len(set(names)) != len(names):
            raise MedaugError(f"{txt}: class names must be unique; found duplicates")
        return names
    flag = re.sub(r"_\d+$", "", npz.stem)  # pneumoniamnist_64 -> pneumoniamnist
    for sidecar in dict.fromkeys([npz.with_suffix(".json"), npz.with_name(flag + ".json")]):
        if sidecar.is_file():
            try:
                labels = json.loads(sidecar.read_text(encoding="utf-8"))["label"]
                names = [str(labels[str(i)]) for i in range(n)]
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
                raise MedaugError(f"{sidecar}: expected MedMNIST INFO JSON with \"label\": {{\"0\": name, ...}} for labels "
                                  f"0..{n - 1} ({exc.__class__.__name__}: {exc}); fix it or remove it") from None
            return names
    from ..medmnist_hub import class_names

    return class_names(flag, n) or [str(i) for i in range(n)]  # the official package's INFO, when installed


@register_reader("medmnist", detect=looks_like_medmnist)
def read_medmnist(root: Path, **_) -> DataIndex:
    npz = _npz_file(root)
    if npz is None:
        raise MedaugError(f"{root}: expected a MedMNIST .npz file (or a folder holding exactly one)")
    members = _members(npz)
    if not members:
        raise MedaugError(f"{npz}: not a readable .npz archive; download it again")
    splits = [s for s in SPLITS if f"{s}_images" in members]
    if "train" not in splits:
        raise MedaugError(f"{npz}: no train_images array; found {', '.join(sorted(members))}; is this a MedMNIST file?")
    parts = []
    for s in splits:
        if f"{s}_labels" not in members:
            raise MedaugError(f"{npz}: has {s}_images but no {s}_labels; download the file again")
        shape, _ = npz_header(npz, f"{s}_images")
        if len(shape) not in (3, 4) or (len(shape) == 4 and shape[-1] not in (1, 3)):
            raise MedaugError(f"{npz}: {s}_images has shape {list(shape)}; expected [N, H, W] or [N, H, W, 3] "
                              "(3D MedMNIST volumes are not supported)")
        try:
            with np.load(npz, allow_pickle=False) as data:
                labels = np.asarray(data[f"{s}_labels"])
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise MedaugError(f"{npz}: cannot read {s}_labels ({exc.__class__.__name__}: {exc}); download the file again") from None
        if labels.ndim == 2 and labels.shape[1] > 1:
            raise MedaugError(f"{npz}: {s}_labels has shape {list(labels.shape)}: a multi-label dataset (e.g. ChestMNIST) "
                              "is not supported; medaug trains single-label classifiers")
        if labels.ndim > 2:
            raise MedaugError(f"{npz}: {s}_labels has shape {list(labels.shape)}; expected [N, 1] or [N] class indices")
        labels = labels.reshape(-1)
        if len(labels) != shape[0]:
            raise MedaugError(f"{npz}: {s}_images has {shape[0]} images but {s}_labels has {len(labels)} labels")
        if not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
            raise MedaugError(f"{npz}: {s}_labels must be non-negative integer class indices (got {labels.dtype})")
        parts.append((s, labels.astype(np.int64)))
    present = np.unique(np.concatenate([labels for _, labels in parts]))
    if len(present) and present[-1] >= len(present):  # before anything is allocated per label
        s = next(s for s, labels in parts if (labels == present[-1]).any())
        raise MedaugError(f"{npz}: {s}_labels holds label {int(present[-1])}, outside 0..{len(present) - 1} for the "
                          f"{len(present)} distinct labels in the file; class indices must run 0..K-1 without gaps: fix the labels")
    n_classes = len(present)
    classes = _class_names(npz, n_classes)
    rows, resolved = [], npz.resolve()
    for s, labels in parts:
        for i, label in enumerate(labels.tolist()):
            item = npz_item(resolved, f"{s}_images", i)
            rows.append(dict(path=item, label=label, split=SPLITS[s], group=item, study="", roi=""))
    return DataIndex(pd.DataFrame(rows, columns=["path", "label", "split", "group", "study", "roi"]), classes, npz,
                     "medmnist", info={"image_level_groups": True, "npz": str(npz)})
