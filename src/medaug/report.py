"""Tables, paired tests and figures, rebuilt from the run folders' files alone.

``collect(runs_dir)`` reads every ``metrics.json`` below ``runs_dir`` into one row per run;
``summarise`` gives mean +- std per (dataset, shot, method) with a paired test of each method
against ``none`` across seeds; ``write_report`` writes report.md, results.csv, summary.csv and
PNG figures into a folder.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import MedaugError
from .io_utils import write_text
from .stats import holm, mean_std, paired_tests

MAIN_METRICS = ["accuracy", "balanced_accuracy", "macro_f1", "auroc", "kappa"]
MASK_METRICS = ["mask_iou", "pointing", "saliency_auroc"]
KEYS = ["dataset", "shot", "method", "seed"]


def collect(runs_dir: str | Path) -> pd.DataFrame:
    """One row per finished run: keys, test metrics, mask metrics and the run folder."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise MedaugError(f"{root}: no such folder; pass the folder `medaug run` wrote (e.g. runs/demo)")
    rows = []
    for path in sorted(root.rglob("metrics.json")):
        rel = path.parent.relative_to(root).parts
        try:
            m = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise MedaugError(f"{path}: not valid JSON; delete the run folder and run it again") from None
        if len(rel) < 4:
            continue  # not a run of an experiment layout
        row = {"dataset": rel[-4], "method": m.get("method", rel[-3]), "shot": rel[-2].removeprefix("shot-"),
               "seed": int(m.get("seed", rel[-1].removeprefix("seed-"))), "run_dir": str(path.parent),
               "wall_s": m.get("wall_s", math.nan), "best_epoch": m.get("best_epoch")}
        row.update({k: v for k, v in m.get("test", {}).items() if isinstance(v, (int, float))})
        row.update({k: v for k, v in m.get("mask", {}).items() if isinstance(v, (int, float))})
        rows.append(row)
    if not rows:
        raise MedaugError(f"{root}: no finished runs (no metrics.json below it)")
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, metrics: list[str], baseline: str = "none") -> pd.DataFrame:
    """Long table: dataset, shot, method, metric, mean, std, n, diff vs baseline, p-values (Holm-adjusted)."""
    out = []
    for (dataset, shot), group in df.groupby(["dataset", "shot"], sort=True):
        base = group[group["method"] == baseline].set_index("seed")
        for method, runs in group.groupby("method", sort=False):
            runs = runs.set_index("seed")
            for metric in metrics:
                if metric not in runs or runs[metric].isna().all():
                    continue
                mean, std, n = mean_std(runs[metric].dropna().to_numpy())
                row = dict(dataset=dataset, shot=shot, method=method, metric=metric, mean=mean, std=std, n=n)
                if method != baseline and metric in base:
                    seeds = sorted(set(runs.index) & set(base.index))
                    test = paired_tests(runs.loc[seeds, metric].to_numpy(float), base.loc[seeds, metric].to_numpy(float))
                    row.update(diff=test["mean_diff"], t_p=test["t_p"], wilcoxon_p=test["wilcoxon_p"], n_paired=test["n"])
                out.append(row)
    table = pd.DataFrame(out)
    if "t_p" in table:
        for metric, rows in table.groupby("metric"):
            table.loc[rows.index, "t_p_holm"] = holm(rows["t_p"].to_list())
    return table


def wide_table(summary: pd.DataFrame, metric: str, digits: int = 3) -> pd.DataFrame:
    """Methods as columns, (dataset, shot) as rows, cells 'mean ± std (n=k)'."""
    rows = summary[summary["metric"] == metric]
    if rows.empty:
        return pd.DataFrame()
    cell = rows.apply(lambda r: f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f} (n={r['n']})", axis=1)
    table = rows.assign(cell=cell).pivot_table(index=["dataset", "shot"], columns="method", values="cell", aggfunc="first")
    order = ["none"] + sorted(c for c in table.columns if c != "none")
    return table[[c for c in order if c in table.columns]]


def method_order(methods) -> list[str]:
    return ["none"] + sorted(m for m in set(methods) if m != "none") if "none" in set(methods) else sorted(set(methods))


def to_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "(no data)\n"
    head = list(table.index.names) + list(table.columns)
    lines = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
    for idx, row in table.iterrows():
        idx = idx if isinstance(idx, tuple) else (idx,)
        lines.append("| " + " | ".join([*map(str, idx), *(str(v) if isinstance(v, str) else "" for v in row)]) + " |")
    return "\n".join(lines) + "\n"


def write_report(runs_dir: str | Path, out: str | Path | None = None, level: float = 0.05) -> Path:
    """Write report.md, results.csv, summary.csv and figures for the runs below ``runs_dir``."""
    from .figures import learning_curves, mask_rows

    root = Path(runs_dir)
    out = Path(out) if out else root / "report"
    df = collect(root)
    metrics = [m for m in MAIN_METRICS + ["study_kappa"] + MASK_METRICS if m in df]
    summary = summarise(df, metrics)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "results.csv", df.to_csv(index=False))
    write_text(out / "summary.csv", summary.to_csv(index=False))

    lines = [f"# medaug report: {root}", "",
             f"{len(df)} runs; methods: {', '.join(method_order(df['method']))}; seeds per cell in parentheses.",
             f"Paired tests across seeds against `none` (paired t-test, Wilcoxon; Holm-adjusted t-test p across each metric's table); level {level}.", ""]
    for metric in metrics:
        lines += [f"## {metric} (test split)", "", to_markdown(wide_table(summary, metric))]
        tests = summary[(summary["metric"] == metric) & summary.get("diff", pd.Series(dtype=float)).notna()] if "diff" in summary else pd.DataFrame()
        if not tests.empty:
            lines += ["| dataset | shot | method | diff vs none | t-test p | Wilcoxon p | Holm p | n |", "|---|---|---|---|---|---|---|---|"]
            for _, r in tests.iterrows():
                lines.append(f"| {r['dataset']} | {r['shot']} | {r['method']} | {r['diff']:+.3f} | {_p(r['t_p'])} | "
                             f"{_p(r['wilcoxon_p'])} | {_p(r.get('t_p_holm'))} | {r['n_paired']} |")
            lines.append("")

    figures = []
    histories = {}
    for method, runs in df.groupby("method"):
        histories[method] = [_read_history(Path(d)) for d in runs["run_dir"]]
    learning_curves(histories, "val_auroc", out / "learning_curves.png")
    figures.append(("Validation AUROC per epoch (mean ± std over seeds)", "learning_curves.png"))
    mask_fig = _mask_figure(df, out / "masks.png")
    if mask_fig:
        figures.append(("Test images with the pixels each method keeps (erased in red; true finding outlined in green)", "masks.png"))
    for method in method_order(df["method"]):
        first = df[df["method"] == method].sort_values("seed").iloc[0]
        hist = Path(first["run_dir"]) / "mask_history.png"
        if hist.is_file():
            name = f"mask_history_{method}.png"
            shutil.copyfile(hist, out / name)
            figures.append((f"{method}: masks of fixed validation images over epochs (seed {first['seed']})", name))
    for method in method_order(df["method"]):
        first = df[df["method"] == method].sort_values("seed").iloc[0]
        hist = Path(first["run_dir"]) / "mask_history.png"
        if hist.is_file():
            name = f"mask_history_{method}.png"
            shutil.copyfile(hist, out / name)
            figures.append((f"{method}: masks of fixed validation images over epochs (seed {first['seed']})", name))
    lines += ["## Figures", ""] + [f"![{t}]({f})\n\n{t}\n" for t, f in figures]
    write_text(out / "report.md", "\n".join(lines) + "\n")
    return out


def _p(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def _read_history(run: Path) -> list[dict]:
    log = run / "log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []


def _mask_figure(df: pd.DataFrame, path: Path) -> bool:
    """Masks of the first run (lowest seed) of each method on the same test images; False if none has masks."""
    rows, images, rois = {}, None, None
    first = df.sort_values(["dataset", "shot", "seed"]).groupby("method").head(1)
    for _, run in first.iterrows():
        f = Path(run["run_dir"]) / "masks.npz"
        if not f.is_file():
            continue
        data = np.load(f)
        images = data["images"] if images is None else images
        rois = data["rois"] if "rois" in data and rois is None else rois
        rows[run["method"]] = data["masks"]
    if not rows:
        return False
    if "none" in set(df["method"]):
        rows = {"none (image)": None, **rows}
    from .figures import mask_rows

    mask_rows(images, rows, rois, path)
    return True
