"""MURA v1.1: ``root[/MURA-v1.1]/{train,valid}_image_paths.csv`` listing ``.../XR_PART/patientID/studyN_label/image.png``.

Layout (the public release, and what ``medaug data synth`` writes)::

    MURA-v1.1/train_image_paths.csv        headerless, one path a line, relative to MURA-v1.1's parent
    MURA-v1.1/train_labeled_studies.csv    headerless: study folder, 0/1
    MURA-v1.1/valid_image_paths.csv, valid_labeled_studies.csv
    MURA-v1.1/{train,valid}/XR_<PART>/patient<ID>/study<N>_{positive,negative}/image<K>.png

Labels come from the study folder suffix. The public ``valid`` split is the held-out test set;
medaug carves its validation split from ``train``, patient-disjoint.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import MedaugError
from .table import DataIndex, register_reader, roi_path_for

BODY_PARTS = ["XR_ELBOW", "XR_FINGER", "XR_FOREARM", "XR_HAND", "XR_HUMERUS", "XR_SHOULDER", "XR_WRIST"]
CLASSES = ["negative", "positive"]


def _mura_dir(root: Path) -> Path | None:
    for cand in (root, root / "MURA-v1.1"):
        if (cand / "train_image_paths.csv").is_file() or (cand / "valid_image_paths.csv").is_file():
            return cand
    return None


def looks_like_mura(root: Path) -> bool:
    return root.is_dir() and _mura_dir(root) is not None


def _normalise_part(part: str) -> str:
    p = part.upper()
    p = p if p.startswith("XR_") else "XR_" + p
    if p not in BODY_PARTS:
        raise MedaugError(f"unknown body part {part!r}: choose one of {', '.join(BODY_PARTS)} (or 'all')")
    return p


@register_reader("mura", detect=looks_like_mura)
def read_mura(root: Path, body_part: str = "all", **_) -> DataIndex:
    mdir = _mura_dir(root)
    if mdir is None:
        raise MedaugError(f"{root}: no MURA-v1.1/train_image_paths.csv; point --data at the MURA-v1.1 folder or its parent")
    rows = []
    for split_name, split in (("train", "train"), ("valid", "test")):
        csv = mdir / f"{split_name}_image_paths.csv"
        if not csv.is_file():
            continue
        try:
            lines = pd.read_csv(csv, header=None, names=["rel"], dtype=str)["rel"].dropna()
        except pd.errors.EmptyDataError:
            lines = pd.Series(dtype=str)
        if lines.empty:
            raise MedaugError(f"{csv}: empty file; it should list image paths, one per line (or remove it)")
        for rel in lines:
            rel = rel.strip()
            parts = Path(rel).parts
            # .../<split>/XR_PART/patientID/studyN_label/imageK.png
            if len(parts) < 5 or not parts[-2].rsplit("_", 1)[-1] in CLASSES:
                raise MedaugError(f"{csv}: line {rel!r} is not .../XR_PART/patientID/studyN_positive|negative/image.png")
            path = (mdir.parent / rel).resolve()
            if not path.is_relative_to(mdir.resolve()):  # paths, not string prefixes (MURA-v1.1x/ is outside)
                raise MedaugError(f"{csv}: path {rel!r} escapes the dataset folder {mdir}")
            part, patient, study = parts[-4], parts[-3], parts[-2]
            rows.append(
                dict(
                    path=str(path),
                    label=CLASSES.index(study.rsplit("_", 1)[1]),
                    split=split,
                    group=patient,
                    study=f"{split_name}/{part}/{patient}/{study}",
                    roi=roi_path_for(path),
                    body_part=part,
                )
            )
    if not rows:
        raise MedaugError(f"{mdir}: train_image_paths.csv and valid_image_paths.csv are missing or empty")
    frame = pd.DataFrame(rows)
    if body_part != "all":
        part = _normalise_part(body_part)
        frame = frame[frame["body_part"] == part].reset_index(drop=True)
        if frame.empty:
            raise MedaugError(f"{mdir}: no images of body part {part}; `medaug data check {root}` lists the parts present")
    return DataIndex(frame, list(CLASSES), mdir, "mura", info={"body_part": body_part})
