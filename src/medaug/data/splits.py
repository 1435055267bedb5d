"""Patient-disjoint splits and seeded k-shot sampling on a :class:`DataIndex` frame."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import MedaugError


def group_split(frame: pd.DataFrame, fractions: dict[str, float], seed: int) -> pd.Series:
    """Assign each patient (``group``) to a split so that split sizes approach ``fractions``.

    Returns a Series of split names aligned with ``frame``. Deterministic given ``seed``;
    stratified by each patient's majority label so small classes land in every split.
    """
    rng = np.random.default_rng(seed)
    names = list(fractions)
    total = sum(fractions.values())
    groups = frame.groupby("group", sort=True)["label"].agg(lambda s: s.value_counts().idxmax())
    sizes = frame.groupby("group", sort=True).size()
    assigned: dict[str, str] = {}
    for _, members in groups.groupby(groups):  # per majority label, shuffled
        ids = list(members.index)
        rng.shuffle(ids)
        n = sum(sizes[i] for i in ids)
        filled = {k: 0.0 for k in names}
        for gid in ids:
            # the split furthest below its share of this label gets the patient
            need = {k: fractions[k] / total * n - filled[k] for k in names}
            best = max(names, key=lambda k: need[k])
            assigned[gid] = best
            filled[best] += sizes[gid]
    return frame["group"].map(assigned)


def carve_validation(frame: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Split the ``train`` rows into train/valid patient-disjointly; other rows keep their split."""
    train = frame[frame["split"] == "train"]
    if train["group"].nunique() < 2:
        raise MedaugError("the training split has fewer than 2 patients; cannot carve a patient-disjoint validation split")
    new = group_split(train, {"train": 1 - fraction, "valid": fraction}, seed)
    out = frame.copy()
    out.loc[train.index, "split"] = new
    return out


def k_shot(frame: pd.DataFrame, k: int, seed: int, classes: list[str]) -> pd.DataFrame:
    """Keep ``k`` training images per class (seeded); other splits untouched."""
    rng = np.random.default_rng(seed)
    keep = []
    train = frame[frame["split"] == "train"]
    for label, rows in train.groupby("label"):
        if len(rows) < k:
            raise MedaugError(
                f"--n-shot {k}: class {classes[label]!r} has only {len(rows)} training images; choose k <= {len(rows)}"
            )
        keep.extend(rng.choice(rows.index.to_numpy(), size=k, replace=False).tolist())
    for label, name in enumerate(classes):
        if label not in set(train["label"]):
            raise MedaugError(f"--n-shot {k}: class {name!r} has no training images")
    other = frame.index[frame["split"] != "train"]
    return frame.loc[sorted(keep) + list(other)]
