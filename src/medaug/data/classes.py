"""Classes as the user means them: a ``--classes`` mapping (``TrainConfig.classes``) merges, renames, reorders or
drops the data's classes by relabelling after the cache, so one decoded cache serves every mapping of a dataset
(the knee set's 5-grade task and its binary KL >= 2 task).

The syntax is parsed by :func:`medaug.config.parse_classes`; here it meets the data: every class the data has
must be mapped exactly once or listed under ``drop=``, and every name must be one of the data's classes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import parse_classes
from ..errors import MedaugError


def class_map(text: str, source: list[str], where: str = "the dataset") -> tuple[list[str], np.ndarray, dict[str, list[str]]]:
    """(new class names, lookup int64 [len(source)]: source label -> new label or -1 when dropped, {new: sources}).

    An unknown source class, or a class of the data that the mapping neither maps nor drops, is one line naming it
    and the data's classes.
    """
    mapping, drop = parse_classes(text)
    named = [s for sources in mapping.values() for s in sources] + drop
    have = ", ".join(source)
    unknown = [s for s in named if s not in source]
    if unknown:
        raise MedaugError(f"--classes {text!r}: {where} has no class {', '.join(map(repr, unknown))}; its classes: {have}")
    unmapped = [c for c in source if c not in named]
    if unmapped:
        raise MedaugError(f"--classes {text!r}: class(es) {', '.join(map(repr, unmapped))} of {where} are not mapped; map "
                          f"every class ({have}) to a new class, or leave it out with drop={','.join(unmapped)}")
    lut = np.full(len(source), -1, np.int64)
    for new, sources in enumerate(mapping.values()):
        for s in sources:
            lut[source.index(s)] = new
    return list(mapping), lut, mapping


def relabel(frame: pd.DataFrame, text: str, source: list[str], where: str = "the dataset") -> tuple[pd.DataFrame, list[str], dict]:
    """``frame`` (a manifest with integer ``label``s of ``source``) with the mapping applied: labels replaced, rows of
    dropped classes removed (the index is kept: it addresses the cache's arrays). Returns (frame, new classes, info):
    info holds ``class_map`` ({new: sources}), ``source_classes`` and ``dropped_images`` (images left out)."""
    classes, lut, mapping = class_map(text, source, where)
    new = lut[frame["label"].to_numpy(np.int64)]
    kept = frame.loc[new >= 0].copy()
    kept["label"] = new[new >= 0]
    return kept, classes, {"class_map": mapping, "source_classes": list(source), "dropped_images": int((new < 0).sum())}
