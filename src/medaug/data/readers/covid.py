"""COVID-19 Radiography Database: ``root/<Class>/images/*.png`` with optional lung masks ``root/<Class>/masks/<same name>``.

The public release has the classes COVID, Lung_Opacity, Normal and Viral Pneumonia; any folder
with an ``images/`` subfolder is a class. A mask with the image's file name (or stem) in ``masks/`` goes into
the ``roi`` column, as do ``<stem>_mask.png``-style files (:func:`medaug.data.table.pair_masks`), which are never images. Metadata spreadsheets (``*.metadata.xlsx``) and other files at the root are ignored. There
are no patient ids: each image is its own group, so medaug's splits are image-level.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ...errors import MedaugError
from ..table import DataIndex, pair_masks, register_reader, roi_value
from .imagefolder import IMAGE_SUFFIXES, SPLIT_NAMES


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "images").is_dir())


def looks_like_covid(root: Path) -> bool:
    if not root.is_dir():
        return False
    names = {d.name.lower() for d in _class_dirs(root)}
    return len(names) >= 2 and not names <= set(SPLIT_NAMES)  # train/images, valid/images: splits, not classes


def _files(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_file() and not e.name.startswith(".")
                      and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES)


@register_reader("covid", detect=looks_like_covid)
def read_covid(root: Path, **_) -> DataIndex:
    dirs = _class_dirs(root) if root.is_dir() else []
    if len(dirs) < 2:
        raise MedaugError(f"{root}: found {len(dirs)} class folder(s) with an images/ subfolder; the COVID-19 Radiography "
                          "layout needs at least 2 (<Class>/images/*.png); point --data at COVID-19_Radiography_Dataset")
    classes = [d.name for d in dirs]
    rows, orphans = [], []
    base = root.absolute()
    for label, d in enumerate(dirs):
        top = base / d.name
        files = [top / "images" / n for n in _files(d / "images")]
        files += [top / "masks" / n for n in _files(d / "masks")] if (d / "masks").is_dir() else []
        images, masks, lost = pair_masks(files, top=top)
        orphans += [str(m) for m in lost]
        if not images:
            raise MedaugError(f"{d / 'images'}: no images (PNG/JPEG/...) in this class folder; add them or remove {d.name}/")
        for path in images:
            rel = f"{d.name}/images/{path.name}"
            rows.append(dict(path=str(path), label=label, split="", group=rel, study="", roi=roi_value(masks.get(path, []))))
    return DataIndex(pd.DataFrame(rows, columns=["path", "label", "split", "group", "study", "roi"]), classes, root, "covid",
                     info={"image_level_groups": True, "masks": sum(r["roi"] != "" for r in rows), "orphan_masks": orphans})
