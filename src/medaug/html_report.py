"""One self-contained HTML report of a study: ``medaug report RUNS_DIR --html``.

Everything is inside the file: CSS inline, figures as base64 PNG ``data:`` URIs, one inline
script (opens collapsed sections before printing). A Content-Security-Policy meta tag forbids
the page from loading anything that is not inline, so opening it never makes a request.

Sections: main table (bold rule in :mod:`medaug.report`), paired tests, metric vs training-set
size per method (when a dataset has several shots), mask gallery with per-image IoU, one section
per run (learning curves, confusion matrix, ROC, reliability diagram with ECE, study-level
metrics, exact config), provenance and checks (things a reader should know before trusting a cell).
Built from the run folders' files alone (metrics.json, log.jsonl, predictions.npz, masks.npz,
mask_history.png, config.toml).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator
import pandas as pd

from . import __version__
from .io_utils import write_text
from .report import (LOWER_BETTER, cell_text, collect, mark_significance, method_order, read_history, report_metrics,
                     shot_key, summarise, table_cells, table_legend)

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;margin:0 auto;max-width:1200px;padding:0 18px 40px}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;border-bottom:2px solid #ddd;padding-bottom:3px;margin-top:28px}
h3{font-size:15px;margin:16px 0 6px}.muted{color:#666}.small{font-size:12px}
nav{background:#f5f5f5;padding:6px 10px;border-radius:4px;font-size:13px}nav a{margin-right:12px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f0f0f0}td.key,th.key{text-align:left}td.bold{background:#e8f4e8}td.better{background:#f4faf4}
.legend{font-size:12px;color:#444;max-width:1000px}
.tables{display:flex;flex-wrap:wrap;gap:6px 28px}.tables h3{margin-top:6px}
img.fig{max-width:100%;height:auto;display:block;margin:4px 0}
.gallery{display:flex;flex-wrap:wrap;gap:4px;align-items:flex-start}.tile{text-align:center;font-size:11px}
.tile img{width:88px;height:88px;image-rendering:pixelated;display:block}
.gallery .name{width:110px;font-weight:600;font-size:12px;text-align:left;align-self:center}
details.run{border:1px solid #ddd;border-radius:4px;margin:6px 0;padding:4px 8px}details.run>summary{cursor:pointer;font-weight:600}
pre{background:#f7f7f7;padding:6px;font-size:11px;overflow-x:auto;white-space:pre-wrap}
.warn{background:#fff4e0;border-left:4px solid #e0a000;padding:4px 8px;margin:4px 0}
.ok{background:#eef8ee;border-left:4px solid #3a3;padding:4px 8px;margin:4px 0}
@page{size:A4 landscape;margin:12mm}
@media print{body{max-width:none;padding:0;font-size:11px}nav{display:none}table{font-size:10px;page-break-inside:avoid}
 h2{page-break-after:avoid}details.run{page-break-inside:avoid;border:none}details.run>summary{list-style:none}
 img.fig{max-width:100%;page-break-inside:avoid}td.bold{background:none}}
"""

SCRIPT = "window.addEventListener('beforeprint',function(){document.querySelectorAll('details').forEach(function(d){d.open=true})});"


def esc(value) -> str:
    return html.escape(str(value), quote=True)


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


def img(uri: str, alt: str, cls: str = "fig") -> str:
    return f'<img class="{cls}" alt="{esc(alt)}" src="{uri}">'


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


def image_iou(keep: np.ndarray, roi: np.ndarray) -> float:
    k, r = keep.astype(bool), roi.astype(bool)
    return float((k & r).sum() / max((k | r).sum(), 1)) if r.any() else math.nan


# --- sections ----------------------------------------------------------------------------------

def main_table_html(summary: pd.DataFrame, metric: str, digits: int = 3) -> str:
    keys, methods, cells = table_cells(summary, metric)
    if not keys:
        return ""
    head = "".join(f"<th>{esc(m)}</th>" for m in methods)
    rows = []
    for d, s in keys:
        tds = []
        for m in methods:
            r = cells.get((d, s, m))
            if r is None:
                tds.append('<td class="missing">–</td>')
                continue
            text = esc(cell_text(r, digits))
            p = "" if not _num(r.get("t_p_holm")) and not _num(r.get("wilcoxon_p_holm")) else \
                f' title="diff {r.get("diff", math.nan):+.4f}; Holm t p {_fmt_p(r.get("t_p_holm"))}; Holm Wilcoxon p {_fmt_p(r.get("wilcoxon_p_holm"))}"'
            if r.get("bold"):
                tds.append(f'<td class="bold" data-method="{esc(m)}"{p}><strong>{text}</strong></td>')
            elif r.get("better"):
                tds.append(f'<td class="better" data-method="{esc(m)}"{p}>{text}*</td>')
            else:
                tds.append(f'<td data-method="{esc(m)}"{p}>{text}</td>')
        rows.append(f'<tr><td class="key">{esc(d)}</td><td class="key">{esc(s)}</td>{"".join(tds)}</tr>')
    title = f"{metric}" + (" (lower is better)" if metric in LOWER_BETTER else "")
    return (f'<h3>{esc(title)}</h3><table class="main" data-metric="{esc(metric)}"><thead><tr><th class="key">dataset</th>'
            f'<th class="key">shot</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def tests_html(summary: pd.DataFrame, metrics: list[str]) -> str:
    if "diff" not in summary:
        return '<p class="muted">No paired tests: no runs of the baseline method.</p>'
    rows = summary[summary["diff"].notna() & summary["metric"].isin(metrics)]
    if rows.empty:
        return '<p class="muted">No paired tests: no method shares seeds with the baseline.</p>'
    body = "".join(
        f'<tr><td class="key">{esc(r["metric"])}</td><td class="key">{esc(r["dataset"])}</td><td class="key">{esc(r["shot"])}</td>'
        f'<td class="key">{esc(r["method"])}</td><td>{r["diff"]:+.4f}</td><td>{_fmt_p(r["t_p"])}</td><td>{_fmt_p(r["wilcoxon_p"])}</td>'
        f'<td>{_fmt_p(r.get("t_p_holm"))}</td><td>{_fmt_p(r.get("wilcoxon_p_holm"))}</td><td>{int(r["n_paired"])}</td>'
        f'<td>{"yes" if r.get("better") else "no"}</td></tr>' for _, r in rows.iterrows())
    return ('<table class="tests"><thead><tr><th class="key">metric</th><th class="key">dataset</th><th class="key">shot</th>'
            '<th class="key">method</th><th>diff vs none</th><th>t-test p</th><th>Wilcoxon p</th><th>Holm t p</th>'
            f'<th>Holm Wilcoxon p</th><th>n paired</th><th>beats none</th></tr></thead><tbody>{body}</tbody></table>')


def gallery_html(df: pd.DataFrame) -> str:
    """Per (dataset, shot): the lowest seed's masks.npz of every mask method on the same test images."""
    parts = []
    for (dataset, shot), group in sorted(df.groupby(["dataset", "shot"]), key=lambda kv: (kv[0][0], shot_key(kv[0][1]))):
        rows, images, rois = [], None, None
        for method in method_order(group["method"]):
            runs = group[group["method"] == method].sort_values("seed")
            f = Path(runs.iloc[0]["run_dir"]) / "masks.npz"
            if not f.is_file():
                continue
            data = np.load(f)
            images = data["images"] if images is None else images
            rois = data["rois"] if "rois" in data and rois is None else rois
            iou = runs["mask_iou"].dropna() if "mask_iou" in runs else pd.Series(dtype=float)
            summary = (f"mask IoU {iou.mean():.3f} ± {iou.std(ddof=1) if len(iou) > 1 else 0:.3f} (n={len(iou)} seeds)"
                       if len(iou) else "no ground-truth regions")
            rows.append((method, int(runs.iloc[0]["seed"]), data["masks"], summary, runs.iloc[0]["run_dir"]))
        if not rows:
            continue
        out = [f'<h3>{esc(dataset)}, shot {esc(shot)}</h3><div class="gallery"><div class="name">image'
               + (" (true finding in green)" if rois is not None else "") + "</div>"]
        out += [f'<div class="tile">{img(tile_uri(images[i], None, None if rois is None else rois[i]), f"test image {i}", "tile")}#{i}</div>'
                for i in range(len(images))]
        out.append("</div>")
        for method, seed, masks, summary, run_dir in rows:
            tiles = []
            for i in range(min(len(images), len(masks))):
                roi = None if rois is None else rois[i]
                iou = image_iou(masks[i], roi) if roi is not None else math.nan
                cap = f"IoU {iou:.2f}" if not math.isnan(iou) else "no finding"
                tiles.append(f'<div class="tile">{img(tile_uri(images[i], masks[i], roi), f"{method} mask {i}", "tile")}{cap}</div>')
            out.append(f'<div class="gallery mask-row" data-method="{esc(method)}"><div class="name">{esc(method)}<br>'
                       f'<span class="muted small">seed {seed}; {esc(summary)}</span></div>{"".join(tiles)}</div>')
            hist = Path(run_dir) / "mask_history.png"
            if hist.is_file():
                out.append(f'<details><summary class="small">{esc(method)}: masks of fixed validation images after each epoch</summary>'
                           f'{img(file_uri(hist), f"{method} mask history")}</details>')
        parts.append("".join(out))
    return "".join(parts)


def per_class_html(labels: np.ndarray, probs: np.ndarray, classes: list[str], show: int = 5) -> str:
    """Per-class precision, recall, F1, AUROC and support; with many classes (RadImageNet has 165)
    only the ``show`` best and worst by F1, so the report stays readable."""
    from .metrics import per_class_table

    df = per_class_table(labels, probs, classes).sort_values("f1", ascending=False)
    note = "per class (test)"
    if len(df) > 2 * show + 2:
        note = f"per class (test): the {show} best and {show} worst of {len(df)} classes by F1"
        df = pd.concat([df.head(show), df.tail(show)])
    head = "".join(f"<th>{c}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(v) if isinstance(v, str) else _v(v)}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f'<p class="small">{note}</p><table class="per-class"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def run_html(run: pd.Series, metrics: dict, config_text: str) -> str:
    folder = Path(run["run_dir"])
    history = read_history(folder)
    probs = labels = None
    pred = folder / "predictions.npz"
    if pred.is_file():
        data = np.load(pred)
        probs, labels = data["probs"], data["labels"]
    uri = run_figure(history, probs, labels, list(metrics.get("classes", [])))
    key = f'{run["dataset"]}/{run["method"]}/shot-{run["shot"]}/seed-{run["seed"]}'
    test = metrics.get("test", {})
    names = ["accuracy", "balanced_accuracy", "macro_f1", "auroc", "kappa", "ece", "loss", "n"]
    image_row = "".join(f"<td>{_v(test.get(k))}</td>" for k in names)
    study = any(k.startswith("study_") for k in test)
    study_row = "".join(f"<td>{_v(test.get('study_' + k))}</td>" for k in names) if study else ""
    table = (f'<table class="run-metrics"><thead><tr><th class="key">level</th>{"".join(f"<th>{k}</th>" for k in names)}</tr></thead>'
             f'<tbody><tr><td class="key">image</td>{image_row}</tr>'
             + (f'<tr><td class="key">study</td>{study_row}</tr>' if study else "") + "</tbody></table>")
    mask = metrics.get("mask", {})
    mask_line = ("<p class='small'>masks: " + ", ".join(f"{esc(k)} {_v(v)}" for k, v in mask.items() if isinstance(v, (int, float)))
                 + "</p>") if mask else ""
    warn = "".join(f'<div class="warn small">{esc(w)}</div>' for w in test.get("warnings", []))
    classes = list(metrics.get("classes", []))
    if probs is not None and len(classes) > 2:
        table += per_class_html(labels, probs, classes)
    noise = folder / "heated" / "mask_history.png"
    if noise.is_file():
        mask_line += (f'<details><summary class="small">stage 1 (heated model): sampled noise masks of fixed validation images, '
                      f'first to last epoch</summary>{img(file_uri(noise), f"{key} noise masks")}</details>')
    prov = metrics.get("provenance", {})
    return (f'<details class="run" id="{anchor(run["dataset"], run["method"], run["shot"], run["seed"])}" data-run="{esc(key)}">'
            f'<summary>{esc(key)} <span class="muted small">test AUROC {_v(test.get("auroc"))}, accuracy {_v(test.get("accuracy"))}, '
            f'best epoch {metrics.get("best_epoch", "?")}/{metrics.get("epochs_run", "?")}, {_v(metrics.get("wall_s"))} s</span></summary>'
            f'{img(uri, f"{key}: learning curves, confusion matrix, ROC, reliability")}{table}{mask_line}{warn}'
            f'<p class="small muted">folder {esc(folder)}; device {esc(prov.get("device", metrics.get("device", "?")))}; '
            f'data fingerprint {esc(metrics.get("data_fingerprint", "?"))}</p>'
            f'<details><summary class="small">config.toml</summary><pre>{esc(config_text)}</pre></details></details>')


def provenance_html(df: pd.DataFrame, meta: dict[str, dict]) -> tuple[str, list[str]]:
    """Study-wide provenance (distinct values with counts) and the per-run table; returns (html, warnings)."""
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

    fields = ["medaug_version", "git_commit", "python", "torch", "numpy", "monai", "device"]
    rows = []
    for f in fields:
        counts = pd.Series([value(meta[d], f) for d in df["run_dir"]]).value_counts()
        rows.append(f'<tr><td class="key">{esc(f)}</td><td class="key">' + "<br>".join(
            f"{esc(v)} <span class='muted'>({c} runs)</span>" for v, c in counts.items()) + "</td></tr>")
        if f in ("medaug_version", "git_commit", "torch", "device") and len(counts) > 1:
            warnings.append(f"runs differ in {f}: {', '.join(map(str, counts.index))}; results may not be comparable")
    for dataset, runs in df.groupby("dataset"):
        fps = pd.Series([value(meta[d], "data_fingerprint") for d in runs["run_dir"]]).value_counts()
        rows.append(f'<tr><td class="key">data fingerprint: {esc(dataset)}</td><td class="key">'
                    + "<br>".join(f"{esc(v)} <span class='muted'>({c} runs)</span>" for v, c in fps.items()) + "</td></tr>")
        if len(fps) > 1:
            warnings.append(f"dataset {dataset}: runs were trained on different data (fingerprints {', '.join(fps.index)})")
    study = f'<table class="provenance"><tbody>{"".join(rows)}</tbody></table>'
    per_run = []
    for _, r in df.sort_values(["dataset", "shot", "method", "seed"], key=lambda c: c.map(shot_key) if c.name == "shot" else c).iterrows():
        m = meta[r["run_dir"]]
        per_run.append(
            f'<tr><td class="key"><a href="#{anchor(r["dataset"], r["method"], r["shot"], r["seed"])}">{esc(r["dataset"])}/{esc(r["method"])}'
            f'/shot-{esc(r["shot"])}/seed-{r["seed"]}</a></td><td>{r["seed"]}</td><td>{esc(m.get("n_train", ""))}</td>'
            f'<td>{m.get("best_epoch", "")}/{m.get("epochs_run", "")}</td><td>{_v(m.get("wall_s"))}</td>'
            f'<td class="key">{esc(value(m, "device"))}</td><td class="key">{esc(value(m, "data_fingerprint"))}</td>'
            f'<td class="key">{esc(value(m, "git_commit")[:12])}</td></tr>')
    total = pd.to_numeric(df["wall_s"], errors="coerce").sum()
    runs_table = ('<table class="provenance-runs"><thead><tr><th class="key">run</th><th>seed</th><th>n train</th><th>best/epochs</th>'
                  '<th>wall s</th><th class="key">device</th><th class="key">data fingerprint</th><th class="key">git commit</th>'
                  f'</tr></thead><tbody>{"".join(per_run)}</tbody></table><p class="small">total wall time {total:.1f} s over {len(df)} runs. '
                  'Each run\'s exact config.toml is in its section under Runs.</p>')
    return study + runs_table, warnings


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
            npair = summary["n_paired"].dropna()
            if test in ("both", "wilcoxon") and len(npair) and (2.0 / 2 ** npair.max()) >= level:
                k = int(npair.max())
                out.append(f"with {k} paired seeds the smallest possible two-sided Wilcoxon p is 2/2^{k} = {2 / 2 ** k:.3g} "
                           f">= {level:g}: no cell can be bold. Use 6 or more seeds (or --test t) to be able to detect a difference.")
    return out


def write_html(runs_dir: str | Path, path: str | Path, *, df: pd.DataFrame | None = None, summary: pd.DataFrame | None = None,
               metrics: list[str] | None = None, level: float = 0.05, test: str = "both", ci_level: float | None = None,
               bootstrap: int = 0, baseline: str = "none") -> Path:
    """Write the self-contained HTML report of the runs below ``runs_dir`` to ``path`` (tests against ``baseline``)."""
    root = Path(runs_dir)
    path = Path(path)
    if df is None:
        df = collect(root)
    metrics = report_metrics(df, metrics)
    if summary is None:
        summary = summarise(df, metrics, baseline=baseline, bootstrap=bootstrap, ci_level=ci_level or 0.95)
        ci_level = ci_level or (0.95 if bootstrap else None)
    if "bold" not in summary:
        summary = mark_significance(summary, level, test)
    meta = {d: json.loads((Path(d) / "metrics.json").read_text()) for d in df["run_dir"]}
    methods = method_order(df["method"])
    parts = [f"<h1>medaug report: {esc(root.name)}</h1>",
             f'<p class="muted">{len(df)} runs from {esc(root)}; datasets: {esc(", ".join(sorted(df["dataset"].unique())))}; '
             f'methods: {esc(", ".join(methods))}; seeds: {esc(", ".join(map(str, sorted(df["seed"].unique()))))}; '
             f'shots: {esc(", ".join(sorted(df["shot"].unique(), key=shot_key)))}. Report by medaug {esc(__version__)}.</p>',
             '<nav><a href="#main">main table</a><a href="#tests">paired tests</a><a href="#size">size/shot</a>'
             '<a href="#curves">learning curves</a><a href="#masks">masks</a><a href="#runs">runs</a>'
             '<a href="#provenance">provenance</a><a href="#checks">checks</a></nav>']
    parts += ['<section id="main"><h2>Main table (test split)</h2>',
              f'<p class="legend">{esc(table_legend(level, test, baseline, ci_level=ci_level))}</p>']
    parts += ['<div class="tables">'] + [f"<div>{main_table_html(summary, m)}</div>" for m in metrics] + ["</div>"]
    parts.append("</section>")
    parts += [f'<section id="tests"><h2>Paired tests against {esc(baseline)}</h2>', tests_html(summary, metrics), "</section>"]

    size = []
    for dataset, g in df.groupby("dataset"):
        if g["shot"].nunique() > 1:
            for m in [m for m in ("auroc", "accuracy") if m in metrics] or metrics[:1]:
                size.append(img(shot_figure(summary, df, dataset, m), f"{dataset}: {m} vs training-set size"))
    parts += ['<section id="size"><h2>Metric vs training-set size</h2>',
              "".join(size) or '<p class="muted">One training-set size per dataset: nothing to plot.</p>', "</section>"]

    curves = []
    for (dataset, shot), g in sorted(df.groupby(["dataset", "shot"]), key=lambda kv: (kv[0][0], shot_key(kv[0][1]))):
        hist = {m: [read_history(Path(d)) for d in g[g["method"] == m]["run_dir"]] for m in method_order(g["method"])}
        curves.append(f"<h3>{esc(dataset)}, shot {esc(shot)}</h3>" + img(curves_figure(hist, "val_auroc"), f"{dataset} shot {shot} curves"))
    parts += ['<section id="curves"><h2>Learning curves (validation AUROC)</h2>', "".join(curves), "</section>"]

    gallery = gallery_html(df)
    parts += ['<section id="masks"><h2>Mask gallery</h2><p class="legend">Test images (lowest seed) with the pixels each '
              'method keeps; erased pixels in red, the true finding outlined in green; per-image IoU of kept region and '
              'true finding where a finding exists.</p>', gallery or '<p class="muted">No method in these runs produces masks.</p>',
              "</section>"]

    runs = []
    order = df.assign(_s=df["shot"].map(shot_key), _m=df["method"].map(methods.index)).sort_values(["dataset", "_s", "_m", "seed"])
    for _, r in order.iterrows():
        cfg = Path(r["run_dir"]) / "config.toml"
        runs.append(run_html(r, meta[r["run_dir"]], cfg.read_text() if cfg.is_file() else "(config.toml missing)"))
    parts += ['<section id="runs"><h2>Runs</h2><p class="legend">Per run: train/validation loss and validation metrics per '
              'epoch; test confusion matrix, ROC curve and reliability diagram (ECE: expected calibration error); image- and '
              'study-level test metrics; the exact config.</p>', "".join(runs), "</section>"]

    prov, prov_warnings = provenance_html(df, meta)
    parts += ['<section id="provenance"><h2>Provenance</h2>', prov, "</section>"]
    notes = checks(df, summary, level, test, baseline) + prov_warnings
    parts += ['<section id="checks"><h2>Checks</h2>',
              "".join(f'<div class="warn">{esc(n)}</div>' for n in notes) or '<div class="ok">No warnings.</div>', "</section>"]

    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>medaug report: {esc(root.name)}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + f"<script>{SCRIPT}</script></body></html>\n")
    write_text(path, page)
    return path


def _num(value) -> bool:
    return isinstance(value, (int, float, np.floating)) and not math.isnan(value)


def _fmt_p(value) -> str:
    return f"{value:.3g}" if _num(value) else "n/a"


def _v(value) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return esc(value)
