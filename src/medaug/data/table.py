"""The one table every reader produces (:class:`DataIndex`) and the reader registry.

A reader turns a dataset folder into a :class:`DataIndex`: one row per sample with columns

    path   absolute path of the image file (str)
    label  integer class index into ``classes`` (int)
    split  'train' | 'valid' | 'test' | '' (unsplit: medaug splits it, patient-disjoint)
    group  patient (or accession) id used for patient-disjoint splits (str)
    study  study id for study-level metrics, '' when the dataset has none (str)
    roi    path of a ground-truth region mask (non-zero = finding), '' when none (str)

Readers may add columns that :func:`medaug.data.io.load_sample` understands (``bbox`` for crops,
``slice`` for NIfTI/DICOM volumes). Everything downstream (cache, splits, training, checks)
reads only this table, so a new format is one new file with one registered function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from ..errors import MedaugError
from ..registry import Registry

COLUMNS = ["path", "label", "split", "group", "study", "roi"]
ROI_SUFFIX = "_roi"  # ground-truth mask of image1.png is image1_roi.png beside it


@dataclass
class DataIndex:
    frame: pd.DataFrame
    classes: list[str]
    root: Path
    format: str
    info: dict = field(default_factory=dict)
    source: Path | None = None  #: the path the user gave (a MURA parent folder, a CSV file), set by read_index

    def __post_init__(self) -> None:
        if len(self.frame) == 0:
            where = self.info.get("csv") or self.info.get("npz") or self.root
            raise MedaugError(f"{where}: no images found for format {self.format!r} (no rows); check the folder and --format")
        missing = [c for c in COLUMNS if c not in self.frame.columns]
        if missing:
            raise ValueError(f"reader {self.format} produced no column(s) {missing}")
        for col in ("path", "roi"):
            bad = next((p for p in self.frame[col] if not _utf8(p)), None)
            if bad is not None:
                raise MedaugError(f"{self.root}: file name {bad.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8; "
                                  "rename the file (medaug writes paths to UTF-8 manifests)")
        odd = [c for c in self.classes if not str(c).strip() or str(c) != str(c).strip()]
        if odd:
            raise MedaugError(f"{self.root}: class name(s) {', '.join(map(repr, odd))} are blank or have surrounding spaces; "
                              "fix the labels (or folder names) in the dataset")
        splits = set(self.frame["split"])
        if splits - {""} and "train" not in splits:
            raise MedaugError(f"{self.root}: no training images (splits found: {', '.join(sorted(splits - {''}))}); "
                              "the train split is missing or empty")
        counts = self.frame["label"].value_counts()
        empty = [c for i, c in enumerate(self.classes) if counts.get(i, 0) == 0]
        if empty:
            raise MedaugError(f"{self.root}: class(es) {', '.join(empty)} have no images; add images or remove the class")


def _utf8(text: str) -> bool:
    try:
        str(text).encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes of a file name, kept as surrogates by os.fsdecode
        return False


@dataclass
class Reader:
    name: str
    read: Callable[..., DataIndex]  # read(root: Path, **options) -> DataIndex
    detect: Callable[[Path], bool]  # cheap check of the on-disk layout


READERS: Registry[Reader] = Registry("data format")


def register_reader(name: str, detect: Callable[[Path], bool]):
    """Decorator: ``@register_reader("mura", detect=looks_like_mura)`` on ``read(root, **opts)``."""

    def deco(read: Callable[..., DataIndex]):
        READERS.register(name)(lambda: Reader(name, read, detect))
        return read

    return deco


def roi_path_for(image: Path) -> str:
    """Path of the ground-truth mask beside ``image`` if it exists, else ''."""
    cand = image.with_name(image.stem + ROI_SUFFIX + image.suffix)
    return str(cand) if cand.exists() else ""
