"""One self-contained HTML report of a study: ``medaug report RUNS_DIR --html``.

Everything is inside the file: CSS inline, figures as base64 PNG ``data:`` URIs, one inline
script (opens collapsed sections before printing). A Content-Security-Policy meta tag forbids
the page from loading anything that is not inline, so opening it never makes a request.

Sections: main table (bold rule in :mod:`medaug.results`), paired tests, per-class metrics and the
confusion matrix per method (:func:`medaug.results.class_tables`), metric vs training-set size per method (when a dataset has several shots), mask gallery with per-image IoU, one section
per run (learning curves, confusion matrix, ROC, reliability diagram with ECE, study-level
metrics, exact config), provenance and checks (things a reader should know before trusting a cell).
Built from the run folders' files alone (metrics.json, log.jsonl, predictions.npz, masks.npz,
mask_history.png, config.toml).

The functions below compute the figures and plain values of each section; the markup is in the
Jinja2 templates ``medaug/templates/report.html.j2`` and ``blocks.html.j2`` (autoescaped: every
value is text, so run names, config files and warnings cannot inject markup).
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from functools import cache
from pathlib import Path

import jinja2
import numpy as np
from matplotlib.ticker import MaxNLocator
import pandas as pd

from . import __version__
from .io_utils import write_text
from .results import (CLASS_LEGEND, LOWER_BETTER, cell_text, class_tables, collect, epochs_trained, is_number,
                      mark_significance, method_order, power_note, read_history, report_metrics, shot_key, summarise,
                      table_cells, table_legend)
from .verdict import compared_runs, read_compare, report_view

@cache
def templates() -> jinja2.Environment:
    """The report's Jinja2 environment: package templates, autoescape on, undefined names are errors."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("medaug", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(v=fmt_value, p=fmt_p)
    return env


def anchor(*parts) -> str:
    return "run-" + re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(map(str, parts))).strip("-")


def png_uri(fig) -> str:
    """A matplotlib figure as a base64 PNG data URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


# --- figures -----------------------------------------------------------------------------------

def run_figure(history: list[dict], probs: np.ndarray | None, labels: np.ndarray | None, classes: list[str]) -> str:
    """Learning curves, confusion matrix, ROC and reliability diagram of one run, as one PNG data URI."""
    from . import figures  # noqa: F401  (selects the Agg backend)
    import matplotlib.pyplot as plt

    from .metrics import confusion, expected_calibration_error, reliability, roc_points

    fig, axes = plt.subplots(1, 5, figsize=(17, 3.1))
    ep = [r.get("epoch", i + 1) for i, r in enumerate(history)]
    ax = axes[0]
    for key in ("train_loss", "val_loss"):
        if any(key in r for r in history):
            ax.plot(ep, [r.get(key, np.nan) for r in history], marker="o", ms=3, label=key)
    ax.set(title="loss per epoch", xlabel="epoch")
    ax.legend(fontsize=7)
    ax = axes[1]
    for key in ("val_auroc", "val_accuracy", "val_balanced_accuracy"):
        if any(key in r for r in history):
            ax.plot(ep, [r.get(key, np.nan) for r in history], marker="o", ms=3, label=key)
    ax.set(title="validation metrics", xlabel="epoch", ylim=(0, 1.02))
    ax.legend(fontsize=7)
    for ax in axes[:2]:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if probs is None:
        for ax in axes[2:]:
            ax.text(0.5, 0.5, "no predictions.npz", ha="center", va="center")
            ax.axis("off")
        return png_uri(fig)
    k = probs.shape[1]
    names = classes if len(classes) == k else [str(i) for i in range(k)]
    cm = confusion(labels, probs, k)
    ax = axes[2]
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=9)
    ax.set_xticks(range(k), names, rotation=30, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set(title="confusion (test)", xlabel="predicted", ylabel="true")
    ax = axes[3]
    roc = roc_points(labels, probs)
    curves = {"positive": roc} if "fpr" in roc else {names[c]: v for c, v in roc.items()}
    for name, pts in curves.items():
        ax.plot(pts["fpr"], pts["tpr"], label=name)
    ax.plot([0, 1], [0, 1], ls="--", c="gray", lw=0.8)
    ax.set(title="ROC (test)", xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02))
    if len(curves) > 1:
        ax.legend(fontsize=6)
    ax = axes[4]
    rel = reliability(labels, probs, bins=10)
    ece = expected_calibration_error(labels, probs)
    centre, acc, count = np.array(rel["centre"]), np.array(rel["accuracy"]), np.array(rel["count"])
    has = count > 0
    ax.bar(centre[has], acc[has], width=0.09, color="#4a90d9", edgecolor="k", lw=0.5, label="accuracy")
    ax.plot([0, 1], [0, 1], ls="--", c="gray", lw=0.8, label="perfect")
    ax.set(title=f"reliability (ECE {ece:.3f})", xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png_uri(fig)


def curves_figure(histories: dict[str, list[list[dict]]], key: str) -> str:
    """Validation ``key`` per epoch, mean ± std over seeds, one line per method."""
    from . import figures  # noqa: F401
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    for name, runs in histories.items():
        series = [[r.get(key, np.nan) for r in h] for h in runs if h]
        if not series:
            continue
        arr = np.full((len(series), max(map(len, series))), np.nan)
        for i, s in enumerate(series):
            arr[i, : len(s)] = s
        x = np.arange(1, arr.shape[1] + 1)
        mean, std = np.nanmean(arr, 0), np.nanstd(arr, 0)
        ax.plot(x, mean, marker="o", ms=3, label=f"{name} (n={len(series)})")
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set(xlabel="epoch", ylabel=key, title=f"{key}: mean ± std over seeds")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return png_uri(fig)


def shot_figure(summary: pd.DataFrame, df: pd.DataFrame, dataset: str, metric: str) -> str:
    """``metric`` vs training-set size (shot) with mean ± std error bars over seeds, one line per method."""
    from . import figures  # noqa: F401
    import matplotlib.pyplot as plt

    rows = summary[(summary["dataset"] == dataset) & (summary["metric"] == metric)]
    shots = sorted(rows["shot"].unique(), key=shot_key)
    sizes = {s: df[(df["dataset"] == dataset) & (df["shot"] == s)]["n_train"].mean() for s in shots}
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    for i, method in enumerate(method_order(rows["method"])):
        r = rows[rows["method"] == method].set_index("shot").reindex(shots)
        x = np.arange(len(shots)) + (i - 0.5 * (len(set(rows["method"])) - 1)) * 0.04
        ax.errorbar(x, r["mean"], yerr=r["std"], marker="o", ms=4, capsize=3, label=method)
    ax.set_xticks(range(len(shots)), [f"{s}\n(n={sizes[s]:.0f})" if not math.isnan(sizes[s]) else str(s) for s in shots], fontsize=8)
    ax.set(xlabel="shot: training images per class (n = training-set size)", ylabel=metric,
           title=f"{dataset}: test {metric} vs training-set size (mean ± std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return png_uri(fig)


def tile_uri(image: np.ndarray, keep: np.ndarray | None, roi: np.ndarray | None) -> str:
    """One gallery tile (image, erased pixels red, true region outlined green) as a PNG data URI."""
    from PIL import Image

    from .figures import overlay

    rgb = (overlay(image, keep, roi) * 255).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def tile_caption(keep: np.ndarray, roi: np.ndarray | None, has_mask: bool | None) -> str:
    """'IoU 0.42' against the image's mask; 'empty mask' (a mask file with no region, e.g. a normal image);
    'no mask' (no mask file, or not known to have one: runs before masks.npz recorded it)."""
    if roi is None or has_mask is False:
        return "no mask"
    iou = image_iou(keep, roi)
    if math.isnan(iou):
        return "empty mask" if has_mask else "no mask"
    return f"IoU {iou:.2f}"


def image_iou(keep: np.ndarray, roi: np.ndarray) -> float:
    k, r = keep.astype(bool), roi.astype(bool)
    return float((k & r).sum() / max((k | r).sum(), 1)) if r.any() else math.nan


# --- sections: plain values for the templates ----------------------------------------------------

def main_table(summary: pd.DataFrame, metric: str, digits: int = 3) -> dict | None:
    """One metric's main table: methods, and per (dataset, shot) row one cell per method (None: no runs)."""
    keys, methods, cells = table_cells(summary, metric)
    if not keys:
        return None
    rows = []
    for d, s in keys:
        row = []
        for m in methods:
            r = cells.get((d, s, m))
            if r is None:
                row.append(None)
                continue
            tested = is_number(r.get("t_p_holm")) or is_number(r.get("wilcoxon_p_holm"))
            title = (f'diff {r.get("diff", math.nan):+.4f}; Holm t p {fmt_p(r.get("t_p_holm"))}; '
                     f'Holm Wilcoxon p {fmt_p(r.get("wilcoxon_p_holm"))}') if tested else None
            row.append(dict(method=m, text=cell_text(r, digits), bold=bool(r.get("bold")), better=bool(r.get("better")), title=title))
        rows.append(dict(dataset=d, shot=s, cells=row))
    return dict(metric=metric, title=metric + (" (lower is better)" if metric in LOWER_BETTER else ""), methods=methods, rows=rows)


def paired_tests(summary: pd.DataFrame, metrics: list[str], baseline: str) -> dict:
    """Rows of the paired-tests table, or a note saying why there are none."""
    if "diff" not in summary:
        return dict(rows=[], note="No paired tests: no runs of the baseline method.")
    rows = summary[summary["diff"].notna() & summary["metric"].isin(metrics)]
    if rows.empty:
        return dict(rows=[], note="No paired tests: no method shares seeds with the baseline.")
    return dict(rows=[{**r.to_dict(), "n_paired": int(r["n_paired"]), "better": bool(r.get("better"))} for _, r in rows.iterrows()],
                baseline=baseline)


def gallery(df: pd.DataFrame) -> list[dict]:
    """Per (dataset, shot): the lowest seed's masks.npz of every mask method on the same test images."""
    blocks = []
    for (dataset, shot), group in sorted(df.groupby(["dataset", "shot"]), key=lambda kv: (kv[0][0], shot_key(kv[0][1]))):
        rows, images, rois, has_roi = [], None, None, None
        for method in method_order(group["method"]):
            runs = group[group["method"] == method].sort_values("seed")
            f = Path(runs.iloc[0]["run_dir"]) / "masks.npz"
            if not f.is_file():
                continue
            data = np.load(f)
            images = data["images"] if images is None else images
            rois = data["rois"] if "rois" in data and rois is None else rois
            has_roi = data["has_roi"] if "has_roi" in data and has_roi is None else has_roi
            iou = runs["mask_iou"].dropna() if "mask_iou" in runs else pd.Series(dtype=float)
            summary = (f"mask IoU {iou.mean():.3f} ± {iou.std(ddof=1) if len(iou) > 1 else 0:.3f} (n={len(iou)} seeds)"
                       if len(iou) else "no ground-truth regions")
            rows.append((method, int(runs.iloc[0]["seed"]), data["masks"], summary, runs.iloc[0]["run_dir"]))
        if not rows:
            continue
        block = dict(dataset=dataset, shot=shot, has_rois=rois is not None, rows=[],
                     images=[tile_uri(images[i], None, None if rois is None else rois[i]) for i in range(len(images))])
        for method, seed, masks, summary, run_dir in rows:
            tiles = []
            for i in range(min(len(images), len(masks))):
                roi = None if rois is None else rois[i]
                tiles.append(dict(uri=tile_uri(images[i], masks[i], roi),
                                  caption=tile_caption(masks[i], roi, None if has_roi is None else bool(has_roi[i]))))
            hist = Path(run_dir) / "mask_history.png"
            block["rows"].append(dict(method=method, seed=seed, summary=summary, tiles=tiles,
                                      history=file_uri(hist) if hist.is_file() else None))
        blocks.append(block)
    return blocks


def per_class(labels: np.ndarray, probs: np.ndarray, classes: list[str], show: int = 5) -> dict:
    """Per-class precision, recall, F1, AUROC and support; with many classes (RadImageNet has 165)
    only the ``show`` best and worst by F1, so the report stays readable."""
    from .metrics import per_class_table

    df = per_class_table(labels, probs, classes).sort_values("f1", ascending=False)
    note = "per class (test)"
    if len(df) > 2 * show + 2:
        note = f"per class (test): the {show} best and {show} worst of {len(df)} classes by F1"
        df = pd.concat([df.head(show), df.tail(show)])
    return dict(note=note, columns=list(df.columns), rows=[list(row) for row in df.itertuples(index=False)])


def run_section(run: pd.Series, metrics: dict, config_text: str) -> dict:
    """One run's section: its figure, image- and study-level test metrics, masks, warnings, provenance, config."""
    folder = Path(run["run_dir"])
    history = read_history(folder)
    probs = labels = None
    pred = folder / "predictions.npz"
    if pred.is_file():
        data = np.load(pred)
        probs, labels = data["probs"], data["labels"]
    classes = list(metrics.get("classes", []))
    test = metrics.get("test", {})
    mask = metrics.get("mask", {})
    noise = folder / "heated" / "mask_history.png"
    prov = metrics.get("provenance", {})
    return dict(
        key=f'{run["dataset"]}/{run["method"]}/shot-{run["shot"]}/seed-{run["seed"]}',
        anchor=anchor(run["dataset"], run["method"], run["shot"], run["seed"]),
        figure=run_figure(history, probs, labels, classes), test=test,
        names=["accuracy", "balanced_accuracy", "macro_f1", "auroc", "kappa", *(k for k in ("qwk", "mae") if k in test), "ece", "loss", "n"],
        study=any(k.startswith("study_") for k in test),
        per_class=per_class(labels, probs, classes) if probs is not None and len(classes) > 2 else None,
        mask=[(k, v) for k, v in mask.items() if isinstance(v, (int, float))] if mask else None,
        noise=file_uri(noise) if noise.is_file() else None,
        warnings=test.get("warnings", []), epochs=epochs_trained(folder, metrics)["text"],
        wall_s=metrics.get("wall_s"), folder=str(folder), device=prov.get("device", metrics.get("device", "?")),
        fingerprint=metrics.get("data_fingerprint", "?"), config=config_text)


def provenance(df: pd.DataFrame, meta: dict[str, dict]) -> tuple[dict, list[str]]:
    """Study-wide provenance (distinct values with counts) and the per-run rows; returns (section, warnings)."""
    warnings = []

    def value(m: dict, key: str) -> str:
        prov = m.get("provenance", {})
        if key == "git_commit":
            c = prov.get("git_commit")
            return "not recorded" if "provenance" not in m else (c or "unknown") + (" (dirty)" if prov.get("git_dirty") else "")
        if key in ("medaug_version", "data_fingerprint"):
            return str(m.get(key, "not recorded"))
        if key == "device":
            return str(prov.get("device", m.get("device", "not recorded")))
        return str(prov.get("packages", {}).get(key, prov.get(key, "not recorded")))

    study = []
    for f in ["medaug_version", "git_commit", "python", "torch", "numpy", "monai", "device"]:
        counts = pd.Series([value(meta[d], f) for d in df["run_dir"]]).value_counts()
        study.append((f, list(counts.items())))
        if f in ("medaug_version", "git_commit", "torch", "device") and len(counts) > 1:
            warnings.append(f"runs differ in {f}: {', '.join(map(str, counts.index))}; results may not be comparable")
    for dataset, runs in df.groupby("dataset"):
        fps = pd.Series([value(meta[d], "data_fingerprint") for d in runs["run_dir"]]).value_counts()
        study.append((f"data fingerprint: {dataset}", list(fps.items())))
        if len(fps) > 1:
            warnings.append(f"dataset {dataset}: runs were trained on different data (fingerprints {', '.join(fps.index)})")
    runs = []
    for _, r in df.sort_values(["dataset", "shot", "method", "seed"], key=lambda c: c.map(shot_key) if c.name == "shot" else c).iterrows():
        m = meta[r["run_dir"]]
        runs.append(dict(anchor=anchor(r["dataset"], r["method"], r["shot"], r["seed"]),
                         key=f'{r["dataset"]}/{r["method"]}/shot-{r["shot"]}/seed-{r["seed"]}', seed=r["seed"],
                         n_train=m.get("n_train", ""), epochs=epochs_trained(Path(r["run_dir"]), m)["text"],
                         wall_s=m.get("wall_s"), device=value(m, "device"), fingerprint=value(m, "data_fingerprint"),
                         commit=value(m, "git_commit")[:12]))
    return dict(study=study, runs=runs, total=pd.to_numeric(df["wall_s"], errors="coerce").sum()), warnings


def checks(df: pd.DataFrame, summary: pd.DataFrame, level: float, test: str, baseline: str = "none") -> list[str]:
    """Things a reader should know before trusting a cell."""
    out = []
    if baseline not in set(df["method"]):
        out.append(f"no `{baseline}` runs: nothing is tested and nothing is bold")
    if not summary.empty:
        for (d, s), g in summary.groupby(["dataset", "shot"]):
            if baseline not in set(g["method"]):
                out.append(f"{d}, shot {s}: no `{baseline}` runs in this row; its cells are not tested")
        n = summary.groupby(["dataset", "shot", "method"])["n"].max()
        if n.min() < 2:
            out.append("some cells have a single seed: std is 0 and no test is possible; run more seeds")
        if n.nunique() > 1:
            out.append(f"cells have different numbers of seeds (n from {n.min()} to {n.max()}); compare n before comparing means")
        if "n_paired" in summary:
            short = summary[summary["n_paired"].notna() & (summary["n_paired"] < summary["n"])]
            if not short.empty:
                out.append(f"{len(short)} cells share fewer seeds with `none` than they have; tests use shared seeds only")
            if power_note(summary, level, test):
                out.append(power_note(summary, level, test))
    return out


def write_html(runs_dir: str | Path, path: str | Path, *, df: pd.DataFrame | None = None, summary: pd.DataFrame | None = None,
               metrics: list[str] | None = None, level: float = 0.05, test: str = "both", ci_level: float | None = None,
               bootstrap: int = 0, baseline: str = "none", compare: dict | None = None) -> Path:
    """Write the self-contained HTML report of the runs below ``runs_dir`` to ``path`` (tests against ``baseline``).
    ``compare``: a ``medaug compare`` folder's view (:func:`medaug.verdict.report_view`): its verdict opens the page."""
    root = Path(runs_dir)
    path = Path(path)
    if df is None:
        df = collect(root)
        info = read_compare(root)
        if info is not None:
            df, compare = compared_runs(df, info), report_view(df, info)
    metrics = report_metrics(df, metrics)
    if summary is None:
        summary = summarise(df, metrics, baseline=baseline, bootstrap=bootstrap, ci_level=ci_level or 0.95)
        ci_level = ci_level or (0.95 if bootstrap else None)
    if "bold" not in summary:
        summary = mark_significance(summary, level, test)
    meta = {d: json.loads((Path(d) / "metrics.json").read_text()) for d in df["run_dir"]}
    methods = method_order(df["method"])

    size = []
    for dataset, g in df.groupby("dataset"):
        if g["shot"].nunique() > 1:
            for m in [m for m in ("auroc", "accuracy") if m in metrics] or metrics[:1]:
                size.append(dict(uri=shot_figure(summary, df, dataset, m), alt=f"{dataset}: {m} vs training-set size"))
    curves = []
    for (dataset, shot), g in sorted(df.groupby(["dataset", "shot"]), key=lambda kv: (kv[0][0], shot_key(kv[0][1]))):
        hist = {m: [read_history(Path(d)) for d in g[g["method"] == m]["run_dir"]] for m in method_order(g["method"])}
        curves.append(dict(dataset=dataset, shot=shot, uri=curves_figure(hist, "val_auroc")))
    runs = []
    order = df.assign(_s=df["shot"].map(shot_key), _m=df["method"].map(methods.index)).sort_values(["dataset", "_s", "_m", "seed"])
    for _, r in order.iterrows():
        cfg = Path(r["run_dir"]) / "config.toml"
        runs.append(run_section(r, meta[r["run_dir"]], cfg.read_text() if cfg.is_file() else "(config.toml missing)"))
    prov, prov_warnings = provenance(df, meta)

    page = templates().get_template("report.html.j2").render(
        version=__version__, name=root.name, root=str(root), n_runs=len(df),
        datasets=sorted(df["dataset"].unique()), methods=methods, seeds=sorted(df["seed"].unique()),
        shots=sorted(df["shot"].unique(), key=shot_key), baseline=baseline,
        legend=table_legend(level, test, baseline, ci_level=ci_level),
        main_tables=[main_table(summary, m) for m in metrics], tests=paired_tests(summary, metrics, baseline),
        class_blocks=class_tables(df), class_legend=CLASS_LEGEND,
        size_figures=size, curves=curves, gallery=gallery(df), runs=runs, provenance=prov,
        notes=checks(df, summary, level, test, baseline) + prov_warnings, compare=compare)
    write_text(path, page)
    return path


def fmt_p(value) -> str:
    """A p-value with 3 significant digits, or 'n/a'."""
    return f"{value:.3g}" if is_number(value) else "n/a"


def fmt_value(value) -> str:
    """A metric value for a table cell: floats with 3 decimals, NaN 'n/a', missing '–', anything else as text."""
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)
