"""Classification, study-level, calibration and mask metrics (scikit-learn does the counting).

Every function returns plain floats (JSON-ready). An undefined metric (AUROC with one class
present) is NaN with a message in ``warnings``, never an exception.
"""

from __future__ import annotations

import warnings as _warnings

import numpy as np
import pandas as pd
from sklearn import metrics as skm


def _auroc(y: np.ndarray, probs: np.ndarray, multi_class: str) -> float:
    k = probs.shape[1]
    if k == 2:
        return float(skm.roc_auc_score(y, probs[:, 1]))
    return float(skm.roc_auc_score(y, probs, multi_class=multi_class, average="macro", labels=list(range(k))))


def expected_calibration_error(y: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-class confidence over ``bins`` equal-width bins."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs((pred[sel] == y[sel]).mean() - conf[sel].mean())
    return float(ece)


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, studies: np.ndarray | None = None,
                           ordinal: bool = False) -> dict:
    """Image-level metrics (and study-level ones, prefixed ``study_``, when study ids are given).

    y_true int [N]; probs float [N, K] rows summing to 1; studies str [N] or None. ``ordinal``: the class
    indices are ordered grades; adds ``mae`` (mean absolute error of the predicted grade, in grades) and
    ``qwk`` (quadratic-weighted Cohen's kappa).
    """
    y = np.asarray(y_true).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    pred = probs.argmax(1)
    labels = list(range(k))
    out: dict = {"n": int(len(y))}
    notes: list[str] = []
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        out["accuracy"] = float(skm.accuracy_score(y, pred))
        out["balanced_accuracy"] = float(skm.balanced_accuracy_score(y, pred))
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, labels=labels, average="macro", zero_division=0)
        out.update(macro_precision=float(p), macro_recall=float(r), macro_f1=float(f))
        kappa = skm.cohen_kappa_score(y, pred, labels=labels)
        out["kappa"] = float(kappa) if np.isfinite(kappa) else 0.0
        if ordinal:
            out["mae"] = float(skm.mean_absolute_error(y, pred))
            qwk = skm.cohen_kappa_score(y, pred, labels=labels, weights="quadratic")
            out["qwk"] = float(qwk) if np.isfinite(qwk) else 0.0
        present = np.unique(y)
        if len(present) < 2 or (k > 2 and len(present) < k):
            out["auroc"] = out["auroc_ovo"] = float("nan")
            notes.append(f"auroc undefined: the evaluation split has {len(present)} of {k} classes")
        else:
            out["auroc"] = _auroc(y, probs, "ovr")
            out["auroc_ovo"] = _auroc(y, probs, "ovo") if k > 2 else out["auroc"]
    out["loss"] = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1)).mean())
    out["ece"] = expected_calibration_error(y, probs)
    if studies is not None and any(str(s) for s in studies):
        frame = pd.DataFrame(probs, columns=labels).assign(study=np.asarray(studies, str), y=y)
        frame = frame[frame["study"] != ""]
        grouped = frame.groupby("study", sort=True)
        study_probs = grouped[labels].mean().to_numpy()
        votes = grouped["y"].agg(lambda s: s.value_counts().idxmax())
        if (grouped["y"].nunique() > 1).any():
            notes.append("some studies mix labels; study label = majority of its images")
        study = classification_metrics(votes.to_numpy(), study_probs)
        notes += study.pop("warnings", [])
        out.update({f"study_{key}": value for key, value in study.items() if key in
                    ("accuracy", "balanced_accuracy", "macro_f1", "kappa", "auroc", "n")})
    if notes:
        out["warnings"] = notes
    return out


#: A two-stage run that replaced its starting checkpoint but lost more validation balanced accuracy than this
#: is flagged: its selection metric (``monitor``, AUROC by default) improved while its operating point got worse.
OPERATING_POINT_DROP = 0.05


def operating_point_drop(start_valid: dict, valid: dict) -> float:
    """Validation balanced accuracy of the starting checkpoint minus that of the chosen one (> 0: worse); NaN
    where either lacks it. Both are metrics dicts of :func:`classification_metrics`."""
    before, after = start_valid.get("balanced_accuracy"), valid.get("balanced_accuracy")
    if before is None or after is None:
        return float("nan")
    return float(before) - float(after)


def per_class_table(y_true: np.ndarray, probs: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """One row per class: support, precision, recall, F1 and one-vs-rest AUROC."""
    y, probs = np.asarray(y_true).astype(int), np.asarray(probs, float)
    labels = list(range(len(class_names)))
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        p, r, f, s = skm.precision_recall_fscore_support(y, probs.argmax(1), labels=labels, zero_division=0)
        aucs = []
        for c in labels:
            target = (y == c).astype(int)
            aucs.append(float(skm.roc_auc_score(target, probs[:, c])) if 0 < target.sum() < len(y) else float("nan"))
    return pd.DataFrame({"class": class_names, "support": s, "precision": p, "recall": r, "f1": f, "auroc": aucs})


def class_report(y_true: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict:
    """Per-class metrics and the confusion matrix of the argmax predictions, JSON-ready (metrics.json).

    y_true int [N]; probs float [N, K]. Returns ``per_class`` {class: {precision, recall (= sensitivity),
    specificity, f1, support}}, one-vs-rest, 0 where undefined (no predictions or no images of the class),
    and ``confusion`` {classes, counts [K][K]: rows the true class, columns the predicted one}.
    """
    y, pred = np.asarray(y_true).astype(int), np.asarray(probs).argmax(1)
    labels = list(range(len(class_names)))
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    mcm = skm.multilabel_confusion_matrix(y, pred, labels=labels)  # [K, 2, 2]: [[tn, fp], [fn, tp]] per class
    tn, fp = mcm[:, 0, 0], mcm[:, 0, 1]
    spec = np.divide(tn, tn + fp, out=np.zeros(len(labels)), where=(tn + fp) > 0)
    per_class = {name: {"precision": float(p[i]), "recall": float(r[i]), "specificity": float(spec[i]),
                        "f1": float(f[i]), "support": int(s[i])} for i, name in enumerate(class_names)}
    counts = skm.confusion_matrix(y, pred, labels=labels)
    return {"per_class": per_class, "confusion": {"classes": list(class_names), "counts": counts.tolist()}}


def confusion(y_true: np.ndarray, probs: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts [K, K]; rows are true classes, columns predicted."""
    return skm.confusion_matrix(np.asarray(y_true).astype(int), np.asarray(probs).argmax(1), labels=list(range(n_classes)))


def roc_points(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """ROC curve points: binary {'fpr','tpr'}; multi-class {class index: {'fpr','tpr'}} one-vs-rest."""
    y, probs = np.asarray(y_true).astype(int), np.asarray(probs, float)
    if probs.shape[1] == 2:
        if len(np.unique(y)) < 2:
            return {}
        fpr, tpr, _ = skm.roc_curve(y, probs[:, 1])
        return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    out = {}
    for c in range(probs.shape[1]):
        target = (y == c).astype(int)
        if 0 < target.sum() < len(y):
            fpr, tpr, _ = skm.roc_curve(target, probs[:, c])
            out[c] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    return out


def reliability(y_true: np.ndarray, probs: np.ndarray, bins: int = 15) -> dict:
    """Reliability diagram data: per bin centre, accuracy, mean confidence and count."""
    y, probs = np.asarray(y_true).astype(int), np.asarray(probs, float)
    conf, correct = probs.max(1), probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    rows = {"centre": [], "accuracy": [], "confidence": [], "count": []}
    for b in range(bins):
        sel = idx == b
        rows["centre"].append(float((edges[b] + edges[b + 1]) / 2))
        rows["count"].append(int(sel.sum()))
        rows["accuracy"].append(float(correct[sel].mean()) if sel.any() else float("nan"))
        rows["confidence"].append(float(conf[sel].mean()) if sel.any() else float("nan"))
    return rows


def mask_metrics(keep: np.ndarray, roi: np.ndarray, saliency: np.ndarray | None = None) -> dict:
    """How well kept regions match true finding regions.

    keep, roi bool [N, H, W]; saliency float [N, H, W] or None. Only images with a non-empty roi
    count for ``mask_iou`` (IoU of kept and true region), ``mask_coverage`` (fraction of the true
    region kept), ``pointing`` (the saliency peak, or the kept region's centroid, lies in the
    true region) and ``saliency_auroc`` (pixel-level AUROC of the saliency for the true region,
    threshold-free); ``mask_area`` is the mean kept fraction over all images.
    """
    keep, roi = np.asarray(keep, bool), np.asarray(roi, bool)
    out = {"mask_area": float(keep.reshape(len(keep), -1).mean(1).mean()) if len(keep) else float("nan")}
    has = roi.reshape(len(roi), -1).any(1)
    out["n_roi"] = int(has.sum())
    if not has.any():
        return out
    k, r = keep[has], roi[has]
    inter = (k & r).reshape(len(k), -1).sum(1)
    union = (k | r).reshape(len(k), -1).sum(1)
    out["mask_iou"] = float((inter / np.maximum(union, 1)).mean())
    out["mask_coverage"] = float((inter / r.reshape(len(r), -1).sum(1)).mean())
    hits = []
    for i in range(len(k)):
        if saliency is not None:
            y, x = np.unravel_index(np.argmax(saliency[has][i]), k[i].shape)
        elif k[i].any():
            ys, xs = np.nonzero(k[i])
            y, x = int(round(ys.mean())), int(round(xs.mean()))
        else:
            hits.append(False)
            continue
        hits.append(bool(r[i][y, x]))
    out["pointing"] = float(np.mean(hits))
    if saliency is not None:  # threshold-free: do finding pixels get higher importance than the rest?
        sal = np.asarray(saliency, float)[has]
        out["saliency_auroc"] = float(skm.roc_auc_score(r.ravel(), sal.ravel()))
    return out
