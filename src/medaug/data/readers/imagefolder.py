"""ImageFolder: ``root/<class>/*.png`` (unsplit), or ``root/{train,val|valid,test}/<class>/*`` (split).

Files named ``<stem>_roi.<ext>`` are ground-truth region masks of ``<stem>.<ext>``, not images.
There are no patient ids in this layout: each image is its own group, so splits are image-level
(``medaug data check`` says so).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...errors import MedaugError
from ..table import ROI_SUFFIX, DataIndex, register_reader, roi_path_for

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".nii", ".gz"}
SPLIT_NAMES = {"train": "train", "val": "valid", "valid": "valid", "validation": "valid", "test": "test"}


def image_files(folder: Path) -> list[Path]:
    """The image files below ``folder``, sorted (hidden files and ``*_roi`` region masks left out)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith(".") and not p.stem.removesuffix(".nii").endswith(ROI_SUFFIX))


def class_dirs(folder: Path) -> list[Path]:
    """The visible subfolders of ``folder``, sorted: one per class."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_split_root(root: Path) -> bool:
    names = {p.name.lower() for p in class_dirs(root)}
    return bool(names) and names <= set(SPLIT_NAMES) and "train" in names


def looks_like_imagefolder(root: Path) -> bool:
    if not root.is_dir():
        return False
    dirs = class_dirs(root)
    if _is_split_root(root):
        dirs = class_dirs(root / "train")
    # any class folder with an image: an empty one is then named by the index check, not read as another layout
    return len(dirs) >= 2 and any(_has_image(d) for d in dirs)


def _has_image(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".") for p in folder.rglob("*"))


@register_reader("imagefolder", detect=looks_like_imagefolder)
def read_imagefolder(root: Path, **_) -> DataIndex:
    parts = [(SPLIT_NAMES[d.name.lower()], d) for d in class_dirs(root)] if _is_split_root(root) else [("", root)]
    classes = sorted({c.name for _, folder in parts for c in class_dirs(folder)})
    if len(classes) < 2:
        raise MedaugError(f"{root}: found {len(classes)} class folder(s); ImageFolder needs one folder per class (at least 2)")
    rows = []
    for split, folder in parts:
        for cls in class_dirs(folder):
            for path in image_files(cls):
                rows.append(dict(path=str(path.resolve()), label=classes.index(cls.name), split=split,
                                 group=str(path.relative_to(root)), study="", roi=roi_path_for(path)))
    return DataIndex(pd.DataFrame(rows, columns=["path", "label", "split", "group", "study", "roi"]), classes, root, "imagefolder",
                     info={"image_level_groups": True})
