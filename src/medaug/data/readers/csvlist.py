"""Generic CSV: a file (or a folder holding exactly one .csv) with a header ``path,label[,group][,split][,roi|mask]``.

Paths are relative to the CSV's folder (absolute paths are allowed inside it) and may not escape
it. ``roi`` (or ``mask``) names the image's ground-truth mask; several masks of one image are separated
by ``|`` and merged by union. Labels are strings or integers; classes are their sorted unique values. ``split`` values:
train, val/valid, test (empty = medaug splits patient-disjointly by ``group``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...errors import MedaugError
from ..table import ROI_SEP, DataIndex, register_reader, roi_value
from .imagefolder import SPLIT_NAMES


def csv_file(root: Path) -> Path | None:
    """``root`` if it is a .csv file, else the one .csv file directly in folder ``root``, else None."""
    if root.is_file() and root.suffix.lower() == ".csv":
        return root
    if root.is_dir():
        csvs = sorted(p for p in root.glob("*.csv") if p.is_file())  # a FIFO would block the reader
        if len(csvs) == 1:
            return csvs[0]
    return None


def looks_like_csv(root: Path) -> bool:
    csv = csv_file(root)
    if csv is None:
        return False
    try:
        head = pd.read_csv(csv, nrows=1)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError):
        return False
    return {"path", "label"} <= {c.strip().lower() for c in head.columns}


def resolve_inside(base: Path, rel: str, where: str) -> Path:
    """``base / rel`` resolved, refusing paths that escape ``base`` (``../``) and folders (a row names one image)."""
    path = (base / str(rel).strip()).resolve()
    if not path.is_relative_to(base.resolve()):
        raise MedaugError(f"{where}: path {rel!r} escapes the data folder {base}; keep images inside it")
    if path.is_dir():
        raise MedaugError(f"{where}: path {rel!r} is a folder, not an image file; list one image file per row")
    return path


def read_table(csv: Path) -> pd.DataFrame:
    """The CSV as strings (empty cells ''), or a one-line error naming the file."""
    try:
        return pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise MedaugError(f"{csv}: not a readable CSV ({exc.__class__.__name__}); save it as UTF-8 with a header row") from None


def class_names(labels: pd.Series, classes: list[str] | None, csv: Path) -> list[str]:
    """Sorted unique labels (numbers numerically), or ``classes`` when given (every label must be in it).

    ``labels`` must be stripped already; a blank label is an error naming its line."""
    blank = labels.index[labels == ""]
    if len(blank):
        raise MedaugError(f"{csv} line {blank[0] + 2}: empty label ({len(blank)} row(s) without one); give every row a class label")
    names = sorted(labels.unique(), key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v))
    if classes:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise MedaugError(f"{csv}: label(s) {', '.join(unknown)} are not in the class list {classes}")
        names = list(classes)
    return names


@register_reader("csv", detect=looks_like_csv)
def read_csv_list(root: Path, classes: list[str] | None = None, **_) -> DataIndex:
    csv = csv_file(root)
    if csv is None:
        raise MedaugError(f"{root}: expected a .csv file (or a folder with exactly one) with columns path,label")
    frame = read_table(csv)
    frame.columns = [c.strip().lower() for c in frame.columns]
    missing = {"path", "label"} - set(frame.columns)
    if missing:
        raise MedaugError(f"{csv}: missing column(s) {', '.join(sorted(missing))}; found {', '.join(frame.columns)}; "
                          "expected path,label[,group][,split]")
    if {"roi", "mask"} <= set(frame.columns):
        raise MedaugError(f"{csv}: has both a roi and a mask column; keep one (the image's ground-truth mask)")
    mask_col = "mask" if "mask" in frame.columns else "roi"
    frame["label"] = frame["label"].str.strip()  # 'positive ' is 'positive'
    names = class_names(frame["label"], classes, csv)
    base = csv.parent
    rows = []
    for i, r in frame.iterrows():
        where = f"{csv} line {i + 2}"
        path = resolve_inside(base, r["path"], where)
        split = r.get("split", "").strip().lower()
        if split and split not in SPLIT_NAMES:
            raise MedaugError(f"{where}: split {split!r} is not train, val, valid or test")
        masks = [m.strip() for m in r.get(mask_col, "").split(ROI_SEP) if m.strip()]
        rows.append(dict(path=str(path), label=names.index(r["label"]), split=SPLIT_NAMES.get(split, ""),
                         group=r.get("group", "").strip() or str(path), study=r.get("study", "").strip(),
                         roi=roi_value(resolve_inside(base, m, where) for m in masks)))
    return DataIndex(pd.DataFrame(rows), [str(n) for n in names], base, "csv", info={"csv": str(csv)})
