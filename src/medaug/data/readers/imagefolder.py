"""ImageFolder: ``root/<class>/*.png`` (unsplit), or ``root/{train,val|valid,test}/<class>/*`` (split).

Mask files are ground-truth regions of an image, never images: ``<stem>_mask.<ext>`` (and ``<stem>_mask_1``,
``_mask_2``, ... merged by union), ``<stem>_roi``, ``<stem>_seg``, or a file of the image's name in a
``masks/`` folder beside the image (or beside its ``images/`` folder); see :func:`medaug.data.table.pair_masks`.
There are no patient ids in this layout: each image is its own group, so splits are image-level
(``medaug data check`` says so).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...errors import MedaugError
from ..table import DataIndex, pair_masks, register_reader, roi_value

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".nii", ".gz"}
SPLIT_NAMES = {"train": "train", "val": "valid", "valid": "valid", "validation": "valid", "test": "test"}


def scan(folder: Path) -> tuple[list[Path], dict[Path, list[Path]], list[Path]]:
    """The image files below ``folder``, sorted (hidden files left out), their mask files, and masks without
    an image (:func:`medaug.data.table.pair_masks`)."""
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    return pair_masks(files, top=folder)


def image_files(folder: Path) -> list[Path]:
    """The image files below ``folder``, sorted (hidden files and mask files left out)."""
    return scan(folder)[0]


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
    rows, orphans = [], []
    for split, folder in parts:
        for cls in class_dirs(folder):
            images, masks, lost = scan(cls)
            orphans += [str(m) for m in lost]
            for path in images:
                rows.append(dict(path=str(path.resolve()), label=classes.index(cls.name), split=split,
                                 group=str(path.relative_to(root)), study="", roi=roi_value(masks.get(path, []))))
    return DataIndex(pd.DataFrame(rows, columns=["path", "label", "split", "group", "study", "roi"]), classes, root, "imagefolder",
                     info={"image_level_groups": True, "orphan_masks": orphans})
