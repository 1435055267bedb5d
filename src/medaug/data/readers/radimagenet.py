"""RadImageNet: ``root/radiology_ai/{CT,MR}/<anatomy>/<pathology>/*.png`` and ``root/radiology_ai/US/<pathology>/*.png``.

``root`` may also be the ``radiology_ai`` folder itself. The class of an image is
``<modality>/<anatomy>/<pathology>`` (``US/<pathology>`` for ultrasound). Split files at the root,
any ``*.csv`` whose name contains train, val or test (``RadiologyAI_train.csv``, ...) with a header
``filename,label`` (filename relative to the root, e.g. ``radiology_ai/CT/abd/normal/ct_abd_001.png``;
label the class string), give the splits; without them the dataset is unsplit. There are no
patient ids: each image is its own group, so medaug's splits are image-level.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

import pandas as pd

from ...errors import MedaugError
from ..table import DataIndex, register_reader
from .csvlist import resolve_inside
from .imagefolder import IMAGE_SUFFIXES

MODALITIES = {"CT": 3, "MR": 3, "US": 2}  # folder depth from the modality folder down to the images
DATA_DIR = "radiology_ai"


def _dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _has_images(folder: Path) -> bool:
    with os.scandir(folder) as it:
        return any(e.is_file() and _is_image(e.name) for e in it)


def _looks_like_tree(folder: Path) -> bool:
    """Only modality folders, and the first branch of each is modality/[anatomy/]pathology/images."""
    subs = _dirs(folder)
    if not subs or any(s.name.upper() not in MODALITIES for s in subs):
        return False
    for mod in subs:
        node = mod
        for _ in range(MODALITIES[mod.name.upper()] - 1):
            if _has_images(node):  # images above the pathology level: an ImageFolder, not RadImageNet
                return False
            children = _dirs(node)
            if not children:
                return False
            node = children[0]
        if not _has_images(node):
            return False
    return True


def _data_dir(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    for cand in (root / DATA_DIR, root):
        if cand.is_dir() and _looks_like_tree(cand):
            return cand
    return None


def looks_like_radimagenet(root: Path) -> bool:
    return _data_dir(root) is not None


def _split_of(csv: Path) -> str | None:
    name = csv.stem.lower()
    for key, split in (("test", "test"), ("val", "valid"), ("train", "train")):
        if key in name:
            return split
    return None


def _walk(data: Path, base: Path) -> dict[str, str]:
    """Every image under ``data``: path relative to ``base`` (posix) -> class string."""
    files: dict[str, str] = {}
    for mod in _dirs(data):
        if mod.name.upper() not in MODALITIES:
            continue
        leaves = [[p] for p in _dirs(mod)] if MODALITIES[mod.name.upper()] == 2 else \
                 [[a, p] for a in _dirs(mod) for p in _dirs(a)]
        for parts in leaves:
            leaf = parts[-1]
            cls = "/".join([mod.name] + [p.name for p in parts])
            rel = leaf.relative_to(base).as_posix()
            with os.scandir(leaf) as it:
                for e in it:
                    if e.is_file() and _is_image(e.name):
                        files[f"{rel}/{e.name}"] = cls
    return files


def _label_key(label: str) -> str:
    return re.sub(r"[/\\\-\s]+", "/", label.strip().lower())


@register_reader("radimagenet", detect=looks_like_radimagenet)
def read_radimagenet(root: Path, **_) -> DataIndex:
    data = _data_dir(root)
    if data is None:
        raise MedaugError(f"{root}: no RadImageNet tree; expected {DATA_DIR}/{{CT,MR}}/<anatomy>/<pathology>/*.png "
                          f"and {DATA_DIR}/US/<pathology>/*.png under it")
    base = root.absolute()
    files = _walk(data.absolute(), base)
    classes = sorted(set(files.values()))
    if len(classes) < 2:
        raise MedaugError(f"{data}: found {len(classes)} class folder(s) with images; RadImageNet needs at least 2 "
                          "<modality>/<anatomy>/<pathology> folders")
    csvs = [(c, _split_of(c)) for c in sorted(root.glob("*.csv")) if _split_of(c)]
    rows = []
    if not csvs:
        for rel, cls in sorted(files.items()):
            rows.append(dict(path=str(base / rel), label=cls, split="", group=rel, study="", roi=""))
    else:
        by_key: dict[str, str | None] = {}
        for cls in classes:  # lenient label spelling (CT-abd-normal, ct/abd/normal) unless ambiguous
            by_key[_label_key(cls)] = cls if _label_key(cls) not in by_key else None
        known = set(classes)
        prefix = data.name + "/"  # filenames may be relative to the root or to radiology_ai/ itself
        for csv, split in csvs:
            try:
                frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
                raise MedaugError(f"{csv}: not a readable CSV ({exc.__class__.__name__}); expected a header filename,label") from None
            frame.columns = [c.strip().lower() for c in frame.columns]
            if not {"filename", "label"} <= set(frame.columns):
                raise MedaugError(f"{csv}: expected columns filename,label; found {', '.join(frame.columns) or 'none'}; "
                                  "fix the header or move the file out of the data folder")
            for i, (rel, label) in enumerate(zip(frame["filename"], frame["label"])):
                where = f"{csv} line {i + 2}"
                cls = label.strip() if label.strip() in known else by_key.get(_label_key(label))
                if cls is None:
                    raise MedaugError(f"{where}: unknown label {label!r}; labels are class folders such as {classes[0]!r}")
                norm = posixpath.normpath(rel.strip().replace("\\", "/"))
                if norm == ".." or norm.startswith("../") or posixpath.isabs(norm):  # refused unless inside the root
                    norm = Path(os.path.relpath(resolve_inside(base, rel, where), base.resolve())).as_posix()
                cands = (norm, prefix + norm) if data != root else (norm, norm.removeprefix(prefix))
                key = next((k for k in cands if k in files), None)
                if key is None:
                    raise MedaugError(f"{where}: image {rel!r} not found under {root}; restore it or delete the row")
                rows.append(dict(path=str(base / key), label=cls, split=split, group=key, study="", roi=""))
        classes = sorted({r["label"] for r in rows})  # the classes the split files use
    frame = pd.DataFrame(rows, columns=["path", "label", "split", "group", "study", "roi"])
    frame["label"] = frame["label"].map({c: i for i, c in enumerate(classes)}).astype(int)
    return DataIndex(frame, classes, root,
                     "radimagenet", info={"image_level_groups": True, "split_files": [str(c) for c, _ in csvs]})
