"""``medaug data check``: what a careful user wants to know before training on a dataset."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MedaugError
from .classes import relabel
from .cache import content_hashes
from .duplicates import CONFLICT, LEAK, Duplicate, duplicate_groups
from .index import read_index
from .table import DataIndex, mask_convention, roi_paths
from .io import load_image


@dataclass
class CheckReport:
    """What ``medaug data check`` found; ``channels``/``kind``: gray (1) or RGB (3) as medaug will read it."""

    index: DataIndex
    counts: pd.DataFrame  # split x class image counts
    patients: dict  # split -> number of patients
    studies: dict  # split -> number of studies
    sizes: pd.Series  # "HxW mode" -> count, over the inspected files
    colour: int = 0  # decoded files that are colour (the rest of ``decoded`` are gray)
    decoded: int = 0  # files decoded
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bad_paths: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)  # the classes counted (after a --classes mapping)
    class_map: dict = field(default_factory=dict)  # {new class: source classes} with a mapping, else {}

    @property
    def channels(self) -> int:
        """1 when every decoded file is gray, else 3 (a dataset mixing gray and colour is read as RGB)."""
        return 3 if self.colour else 1

    @property
    def kind(self) -> str:
        return "RGB (3 channels)" if self.colour else "gray (1 channel)"
    masks: str = ""  #: one line: how many images have masks, by which convention
    duplicates: list[Duplicate] = field(default_factory=list)  #: identical images, label conflicts first


def _describe(path: str) -> str:
    """'H x W, mode' from the header where cheap (PIL), else from a decode."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return f"{img.height}x{img.width} {img.mode}"
    except Exception:
        arr = load_image(path)
        return f"{arr.shape[0]}x{arr.shape[1]} decoded"


def check_dataset(root: str | Path, fmt: str = "auto", sample: int | None = 500, seed: int = 0, classes: str = "",
                  **reader_options) -> CheckReport:
    """Inspect a dataset; decode ``sample`` files (None = all). Fatal layout errors raise MedaugError.

    ``classes``: a class mapping (``--classes``): the counts, and the checks on them, are per new class
    (``report.classes``); ``report.class_map`` {new: sources}. Every file is still inspected."""
    index = read_index(root, fmt, **reader_options)
    frame = index.frame.copy()
    frame["split"] = frame["split"].replace("", "(unsplit)")
    names, class_map, counted = list(index.classes), {}, frame
    if classes:
        counted, names, info = relabel(frame, classes, names, where=str(index.root))
        class_map = info["class_map"]
    counted = counted.assign(**{"class": [names[i] for i in counted["label"]]})
    counts = counted.pivot_table(index="split", columns="class", values="path", aggfunc="count", fill_value=0)
    counts = counts[[c for c in names if c in counts.columns]]  # the classes' order (a mapping's as written)
    report = CheckReport(index, counts, counted.groupby("split")["group"].nunique().to_dict(),
                         counted[counted["study"] != ""].groupby("split")["study"].nunique().to_dict(), pd.Series(dtype=int),
                         classes=names, class_map=class_map)
    if len(counted) < len(frame):
        report.notes.append(f"--classes leaves out {len(frame) - len(counted)} image(s) of the dropped class(es) "
                            f"{', '.join(c for c in index.classes if c not in sum(class_map.values(), []))}")
    for split, row in counts.iterrows():
        for cls, n in row.items():
            if n == 0:
                report.problems.append(f"split {split}: class {cls!r} has no images")
        if (row > 0).sum() == 1:
            report.notes.append(f"split {split} has one class only: AUROC is undefined there")
    share = counted["class"].value_counts(normalize=True)
    if share.max() > 0.8:
        report.notes.append(f"class imbalance: {share.idxmax()!r} is {share.max():.0%} of the images")
    if index.info.get("image_level_groups") or (frame["group"] == frame["path"]).all():
        report.notes.append("no patient ids in this layout: each image is its own group, so splits are image-level")

    # patients in more than one split
    per_group = frame[frame["split"] != "(unsplit)"].groupby("group")["split"].nunique()
    leaked = per_group[per_group > 1]
    if len(leaked):
        report.problems.append(f"{len(leaked)} patient(s) appear in more than one split, e.g. {leaked.index[0]}")

    report.masks = mask_summary(index)
    if index.info.get("orphan_masks"):
        lost = index.info["orphan_masks"]
        report.notes.append(f"{len(lost)} mask file(s) without an image (not used, and not read as images), e.g. {lost[0]}")
    listed = {m for roi in frame["roi"] for m in roi_paths(roi)} & set(frame["path"])
    if listed:
        report.problems.append(f"{len(listed)} file(s) are both an image and another image's mask, e.g. {sorted(listed)[0]}; "
                               "a mask must not be listed as an image")

    # identical files (content hash): label conflicts, copies across splits, copies within a split
    unique_paths = frame.drop_duplicates("path")
    files = [p for p in unique_paths["path"] if Path(p).is_file()]
    hashes = content_hashes({p: os.stat(p) for p in files})
    frame["sha"] = frame["path"].map(hashes)
    frame["split"] = index.frame["split"].to_numpy()  # '' for unsplit: copies there are not across splits
    report.duplicates = duplicate_groups(frame, "sha")
    kinds = pd.Series([d.kind for d in report.duplicates], dtype=str)
    example = {k: next((d.describe(index.classes) for d in report.duplicates if d.kind == k), "") for k in set(kinds)}
    if (kinds == CONFLICT).any():
        report.problems.append(f"{(kinds == CONFLICT).sum()} label conflict(s), the same image under two classes, e.g. "
                               f"{example[CONFLICT]}; training refuses them unless allow_label_conflicts = true")
    if (kinds == LEAK).any():
        report.problems.append(f"{(kinds == LEAK).sum()} identical file(s) in more than one split, e.g. {example[LEAK]}")
    copies = kinds[(kinds != CONFLICT) & (kinds != LEAK)]
    if len(copies):
        e = next(d for d in report.duplicates if d.kind not in (CONFLICT, LEAK))
        unsplit = not any(e.splits)
        report.notes.append(f"{len(copies)} set(s) of identical files within one class"
                            + (" (medaug's split may put copies in train and test)" if unsplit else " and split")
                            + f", e.g. {e.describe(index.classes)}; remove the copies")

    # decodability and sizes
    paths = unique_paths["path"].to_numpy()
    if sample is not None and len(paths) > sample:
        paths = np.random.default_rng(seed).choice(paths, size=sample, replace=False)
        report.notes.append(f"decoded a random sample of {sample} files (use --all for every file)")
    sizes, bad = [], []
    for p in sorted(paths):
        try:
            report.colour += load_image(p).ndim == 3
            report.decoded += 1
            sizes.append(_describe(p))
        except MedaugError as exc:
            bad.append((p, str(exc)))
    report.sizes = pd.Series(sizes, dtype=str).value_counts()
    if 0 < report.colour < report.decoded:
        report.notes.append(f"{report.decoded - report.colour} of the {report.decoded} decoded images are gray, the others "
                            "colour: the dataset is read as RGB (the gray images repeated to 3 channels)")
    if bad:
        report.bad_paths = [p for p, _ in bad]
        report.problems.append(f"{len(bad)} unreadable file(s), e.g. {bad[0][1]}")
    return report


def mask_summary(index: DataIndex) -> str:
    """'N of M images have a mask (<stem>_mask: n, ...; several masks merged by union: k image(s), e.g. x.png)', or how to add masks."""
    rois = index.frame["roi"]
    has = rois != ""
    if not has.any():
        return ("none (the mask metrics need <stem>_mask.png, <stem>_roi.png or <stem>_seg.png beside each image, "
                "a masks/ folder beside images/, or a roi column in a CSV; README 'Datasets')")
    listed = "CSV column" if index.format == "csv" else "listed"
    conventions = pd.Series([" + ".join(sorted({mask_convention(m) for m in roi_paths(r)})).replace("listed", listed)
                             for r in rois[has]]).value_counts()
    conventions = conventions.sort_index().sort_values(ascending=False, kind="stable")  # ties by name
    text = f"{int(has.sum())} of {len(rois)} images have a mask (" + ", ".join(f"{k}: {v}" for k, v in conventions.items())
    several = index.frame.loc[has & rois.str.contains("|", regex=False), "path"]
    if len(several):
        text += f"; several masks merged by union: {len(several)} image(s), e.g. {several.iloc[0]}"
    return text + ")"


def size_summary(sizes: pd.Series, show: int = 5) -> str:
    """'HxW mode' counts as one line: all of them when few, else the range, the most common and a count of others."""
    if len(sizes) <= show + 1:
        return ", ".join(f"{k} ({v})" for k, v in sizes.items())
    dims = [tuple(int(x) for x in str(k).split()[0].split("x")) for k in sizes.index]
    heights, widths = [h for h, _ in dims], [w for _, w in dims]
    top = ", ".join(f"{k} ({v})" for k, v in sizes.head(show).items())
    rest = sizes.iloc[show:]
    return (f"{len(sizes)} distinct; height {min(heights)}-{max(heights)}, width {min(widths)}-{max(widths)}; "
            f"most common: {top}; {len(rest)} other size(s) ({int(rest.sum())} files)")
