"""Hip-fracture style CSV: image path, label (any number of classes), patient or accession id, boxes.

The layout of the APGA paper's private hip set (Table 3: whole pelvis images, or bounding-box crops
of each hip; 60:25:15 patient-disjoint split). One row per box; an image with two boxes has two
rows. Column names are matched case-insensitively against common spellings:

    image    path | image | image_path | filename | file
    label    label | class | diagnosis | target
    patient  patient_id | patient | patientid | group   (patient-disjoint splits group by it)
    study    accession | accession_number | study | study_id
    box      xmin,ymin,xmax,ymax | x1,y1,x2,y2 | x,y,width,height   (pixels of the source image)
    split    split (optional: train, val/valid, test; otherwise medaug splits by patient)

``crop='none'`` (default): one sample per image (rows of the same image are merged).
``crop='bbox'``: one sample per box, cropped from the image before resizing; every row needs a box.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...errors import MedaugError
from ..table import DataIndex, register_reader
from .csvlist import class_names, csv_file, read_table, resolve_inside
from .imagefolder import SPLIT_NAMES

ALIASES = {
    "path": ("path", "image", "image_path", "filename", "file"),
    "label": ("label", "class", "diagnosis", "target"),
    "group": ("patient_id", "patient", "patientid", "group"),
    "study": ("accession", "accession_number", "study", "study_id"),
    "split": ("split",),
}
BOX_COLUMNS = (  # each converted to (x1, y1, x2, y2)
    (("xmin", "ymin", "xmax", "ymax"), lambda a, b, c, d: (a, b, c, d)),
    (("x1", "y1", "x2", "y2"), lambda a, b, c, d: (a, b, c, d)),
    (("x", "y", "width", "height"), lambda a, b, w, h: (a, b, a + w, b + h)),
)
CROPS = ("none", "bbox")
GENERIC_IDS = ("group", "study", "study_id")  # id columns that alone leave a CSV to the generic reader


def _columns(header: list[str]) -> tuple[dict[str, str], tuple | None]:
    """Map canonical names to the CSV's columns, and the box column set (names, converter) or None."""
    lower = {c.strip().lower(): c for c in header}
    found = {}
    for key, names in ALIASES.items():
        match = next((lower[a] for a in names if a in lower), None)
        if match is not None:
            found[key] = match
    boxes = next(((tuple(lower[n] for n in names), conv) for names, conv in BOX_COLUMNS if all(n in lower for n in names)), None)
    return found, boxes


def looks_like_hipcsv(root: Path) -> bool:
    """A CSV with image and label columns plus boxes or a patient/accession column (else: generic csv)."""
    csv = csv_file(root)
    if csv is None:
        return False
    try:
        header = list(pd.read_csv(csv, nrows=0).columns)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return False
    found, boxes = _columns(header)
    named_id = {c.strip().lower() for c in header} & ({*ALIASES["group"], *ALIASES["study"]} - set(GENERIC_IDS))
    return "path" in found and "label" in found and (boxes is not None or bool(named_id))


def _box(row: pd.Series, boxes: tuple, where: str) -> str:
    """'x1,y1,x2,y2' in integer pixels from the row's box columns ('' when all are empty)."""
    names, convert = boxes
    cells = [str(row[n]).strip() for n in names]
    if not any(cells):
        return ""
    try:
        x1, y1, x2, y2 = (int(round(float(v))) for v in convert(*(float(c) for c in cells)))
    except ValueError:
        raise MedaugError(f"{where}: box {cells} is not numeric; give pixel coordinates {', '.join(names)}") from None
    if x2 <= x1 or y2 <= y1 or x1 < 0 or y1 < 0:
        raise MedaugError(f"{where}: box {cells} is empty or negative; expected {names[0]} < {names[2]} and {names[1]} < {names[3]}, all >= 0")
    return f"{x1},{y1},{x2},{y2}"


@register_reader("hipcsv", detect=looks_like_hipcsv)
def read_hipcsv(root: Path, crop: str = "none", classes: list[str] | None = None, **_) -> DataIndex:
    if crop not in CROPS:
        raise MedaugError(f"--crop {crop!r}: unknown; use one of {', '.join(CROPS)}")
    csv = csv_file(root)
    if csv is None:
        raise MedaugError(f"{root}: expected a .csv file (or a folder with exactly one) with image and label columns")
    frame = read_table(csv)
    cols, boxes = _columns(list(frame.columns))
    missing = [k for k in ("path", "label") if k not in cols]
    if missing:
        raise MedaugError(f"{csv}: no {' or '.join(missing)} column; found {', '.join(frame.columns)}; "
                          f"name them e.g. {ALIASES['path'][0]},{ALIASES['label'][0]},patient_id,xmin,ymin,xmax,ymax")
    if crop == "bbox" and boxes is None:
        raise MedaugError(f"{csv}: --crop bbox needs box columns (xmin,ymin,xmax,ymax | x1,y1,x2,y2 | x,y,width,height)")
    labels = frame[cols["label"]].str.strip()
    names = class_names(labels, classes, csv)
    base = csv.parent
    rows = []
    for i, r in frame.iterrows():
        where = f"{csv} line {i + 2}"
        path = resolve_inside(base, r[cols["path"]], where)
        split = r[cols["split"]].strip().lower() if "split" in cols else ""
        if split and split not in SPLIT_NAMES:
            raise MedaugError(f"{where}: split {split!r} is not train, val, valid or test")
        row = dict(path=str(path), label=names.index(labels[i]), split=SPLIT_NAMES.get(split, ""),
                   group=r[cols["group"]].strip() if "group" in cols else "", study=r[cols["study"]].strip() if "study" in cols else "",
                   roi="", bbox="")
        row["group"] = row["group"] or row["study"] or str(path)
        if crop == "bbox":
            row["bbox"] = _box(r, boxes, where)
            if not row["bbox"]:
                raise MedaugError(f"{where}: no box on this row; --crop bbox needs one per row (or train on whole images: --crop none)")
        rows.append(row)
    out = pd.DataFrame(rows)
    if crop == "none":  # several boxes of one image: one whole-image sample
        conflict = out.groupby("path")["label"].nunique()
        if (conflict > 1).any():
            raise MedaugError(f"{csv}: image {conflict.idxmax()} has rows with different labels; "
                              "with whole images each image needs one label (or use --crop bbox)")
        out = out.drop_duplicates("path").reset_index(drop=True)
    return DataIndex(out, [str(n) for n in names], base, "hipcsv", info={"csv": str(csv), "crop": crop})
