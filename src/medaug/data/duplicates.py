"""Exact duplicates in a dataset table: rows whose image has the same bytes (a content hash column).

Used by ``medaug data check`` (every kind, listed) and by training (a label conflict is refused
unless ``allow_label_conflicts``). Rows are the same image when their hash and, where the reader
sets them, their ``bbox`` and ``slice`` agree (two boxes of one pelvis are two samples, not copies).
Images inside an archive (MedMNIST ``.npz`` items, whose hash is the archive's) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .io import source_file

#: the kinds of a duplicate group, most serious first
CONFLICT, LEAK, COPY = "label conflict", "across splits", "same class"


@dataclass
class Duplicate:
    """One set of rows holding the same image: their paths, class indices and splits ('' = unsplit)."""

    paths: list[str]
    labels: list[int]
    splits: list[str]

    @property
    def kind(self) -> str:
        """:data:`CONFLICT` (two classes), :data:`LEAK` (one class, two splits) or :data:`COPY`."""
        if len(set(self.labels)) > 1:
            return CONFLICT
        return LEAK if len({s for s in self.splits if s}) > 1 else COPY

    def describe(self, classes: list[str]) -> str:
        """'a.png (benign) = b.png (malignant)', or 'a.png listed as benign and malignant' for one path listed twice."""
        names = [classes[i] if 0 <= i < len(classes) else str(i) for i in self.labels]
        if len(set(self.paths)) == 1:
            return f"{self.paths[0]} listed {len(self.paths)} times as {' and '.join(dict.fromkeys(names))}"
        where = [f"{p} ({n}{', ' + s if s and self.kind == LEAK else ''})" for p, n, s in zip(self.paths, names, self.splits)]
        return " = ".join(where)


def duplicate_groups(frame: pd.DataFrame, hash_column: str) -> list[Duplicate]:
    """Every group of rows of ``frame`` (columns path, label, split and ``hash_column``) that hold the same image,
    label conflicts first, then copies across splits, then copies within a split; each group's rows in path order."""
    if hash_column not in frame or frame.empty:
        return []
    real = np.array([source_file(p) == p for p in frame["path"]], bool)
    rows = frame[real & frame[hash_column].notna().to_numpy() & (frame[hash_column] != "").to_numpy()]
    keys = [hash_column] + [c for c in ("bbox", "slice") if c in rows]
    out = []
    for _, group in rows.astype({k: str for k in keys}).groupby(keys, sort=True):
        if len(group) > 1:
            group = group.sort_values("path", kind="stable")
            out.append(Duplicate(group["path"].astype(str).tolist(), group["label"].astype(int).tolist(),
                                 group["split"].fillna("").astype(str).tolist()))
    order = {CONFLICT: 0, LEAK: 1, COPY: 2}
    return sorted(out, key=lambda d: (order[d.kind], d.paths))


def conflict_message(conflicts: list[Duplicate], classes: list[str], where: str, show: int = 2) -> str:
    """The one line training prints when it refuses label conflicts."""
    shown = "; ".join(d.describe(classes) for d in conflicts[:show])
    more = f" (and {len(conflicts) - show} more)" if len(conflicts) > show else ""
    return (f"{where}: {len(conflicts)} label conflict(s), the same image under two classes: {shown}{more}; fix the labels "
            f"or remove the copies (`medaug data check` lists them), or set allow_label_conflicts = true in [train] "
            f"(--allow-label-conflicts) to train on them anyway")
