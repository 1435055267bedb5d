"""The one table every reader produces (:class:`DataIndex`) and the reader registry.

A reader turns a dataset folder into a :class:`DataIndex`: one row per sample with columns

    path   absolute path of the image file (str)
    label  integer class index into ``classes`` (int)
    split  'train' | 'valid' | 'test' | '' (unsplit: medaug splits it, patient-disjoint)
    group  patient (or accession) id used for patient-disjoint splits (str)
    study  study id for study-level metrics, '' when the dataset has none (str)
    roi    path of a ground-truth region mask (non-zero = finding), '' when none (str); several masks of
           one image are joined by ``|`` (:data:`ROI_SEP`) and merged by union when decoded

Readers may add columns that :func:`medaug.data.io.load_sample` understands (``bbox`` for crops,
``slice`` for NIfTI/DICOM volumes). Everything downstream (cache, splits, training, checks)
reads only this table, so a new format is one new file with one registered function.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from ..errors import MedaugError
from ..registry import Registry

COLUMNS = ["path", "label", "split", "group", "study", "roi"]
ROI_SUFFIX = "_roi"  # ground-truth mask of image1.png is image1_roi.png beside it (one of MASK_KINDS)
#: the mask-file conventions of public datasets: ``<stem>_mask.png`` (breast ultrasound BUSI; several masks of one
#: image as ``<stem>_mask_1.png``, ``<stem>_mask_2.png``, ...), ``<stem>_roi.png`` (medaug's synthetic data),
#: ``<stem>_seg.png``, and a ``masks/`` folder beside ``images/`` with the image's file name (COVID-19 radiography)
MASK_KINDS = ("mask", "roi", "seg")
MASK_FOLDER = "masks"
MASK_NAME = re.compile(r"^(?P<stem>.+?)_(?P<kind>" + "|".join(MASK_KINDS) + r")(?:_(?P<n>\d+))?$", re.IGNORECASE)
ROI_SEP = "|"  #: several masks of one image in the roi column, merged by union


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
    """Path of the ground-truth mask beside ``image`` if it exists (``<stem>_roi``, ``_mask`` or ``_seg`` with the
    image's suffix), else ''. For a whole folder, :func:`pair_masks` also finds numbered masks and ``masks/``."""
    for kind in MASK_KINDS:
        cand = image.with_name(image.stem + "_" + kind + image.suffix)
        if cand.exists():
            return str(cand)
    return ""


def file_stem(path: Path) -> str:
    """The name without its suffix (``.nii.gz`` counts as one)."""
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem


def mask_target(path: Path, top: Path | None = None) -> list[tuple[Path, str]] | None:
    """Where the image of mask file ``path`` would be, as (folder, stem) candidates in order; None when
    ``path`` is not a mask by name or folder (:data:`MASK_KINDS`, :data:`MASK_FOLDER` below ``top``: a class
    folder named ``masks`` is a class)."""
    stem, match = file_stem(path), MASK_NAME.match(file_stem(path))
    base = match["stem"] if match else stem
    if path.parent.name.lower() == MASK_FOLDER and path.parent != top:
        up = path.parent.parent
        return [(up / "images", stem), (up / "images", base), (up, stem), (up, base)]
    return [(path.parent, base)] if match else None


def mask_convention(mask: str | Path) -> str:
    """How a mask file is tied to its image: '<stem>_mask_N', '<stem>_mask', '<stem>_roi', '<stem>_seg',
    'masks/ folder', or 'listed' (a CSV column)."""
    path = Path(mask)
    if path.parent.name.lower() == MASK_FOLDER:
        return "masks/ folder"
    match = MASK_NAME.match(file_stem(path))
    if match is None:
        return "listed"
    return f"<stem>_{match['kind'].lower()}" + ("_N" if match["n"] else "")


def pair_masks(files: Iterable[Path], top: Path | None = None) -> tuple[list[Path], dict[Path, list[Path]], list[Path]]:
    """Split image-like files (below folder ``top``) into images and masks (by :func:`mask_target`), each mask
    paired with its image. Returns (images, {image: its masks, sorted}, masks without an image).
    A mask is never an image."""
    files = sorted(files)
    masks = {f: mask_target(f, top) for f in files}
    images = [f for f in files if masks[f] is None]
    by_key = {(f.parent, file_stem(f)): f for f in images}
    paired: dict[Path, list[Path]] = {}
    orphans = []
    for mask, targets in masks.items():
        if targets is None:
            continue
        image = next((by_key[t] for t in targets if t in by_key), None)
        if image is None:
            orphans.append(mask)
        else:
            paired.setdefault(image, []).append(mask)
    return images, paired, orphans


def roi_value(masks: Iterable[Path | str]) -> str:
    """The roi column of an image with these mask files ('' for none)."""
    return ROI_SEP.join(str(m) for m in masks)


def roi_paths(roi: str) -> list[str]:
    """The mask files of one roi column value."""
    return [p for p in str(roi).split(ROI_SEP) if p] if roi else []
