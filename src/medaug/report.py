"""Tables, paired tests and figures, rebuilt from the run folders' files alone.

``collect(runs_dir)`` reads every ``metrics.json`` below ``runs_dir`` into one row per run;
``summarise`` gives mean +- std per (dataset, shot, method) with paired tests of each method
against ``none`` across seeds (t-test and Wilcoxon, each Holm-adjusted across a metric's table);
``mark_significance`` decides which cells beat ``none`` and which one per row is bold;
``format_main_table`` renders the main table as Markdown, CSV or LaTeX; ``write_report`` writes
report.md, results.csv, summary.csv, main_table.{md,csv,tex} and PNG figures into a folder
(and report.html with ``html=True``, see :mod:`medaug.html_report`).

The bold rule, stated once: in each (dataset, shot) row of a metric's table, a method *beats*
the baseline when its mean paired difference over seeds is in the metric's good direction and
the Holm-adjusted p-values (Holm over every method-vs-baseline comparison of that metric's
table) of the paired t-test and of the Wilcoxon signed-rank test are both below ``level``.
Of the methods that beat the baseline, the one with the best mean is bold. A higher mean that
is not significant is never bold.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import MedaugError
from .io_utils import output_folder, save_with, write_text
from .stats import bootstrap_ci, holm, mean_std, paired_tests

MAIN_METRICS = ["accuracy", "balanced_accuracy", "macro_f1", "auroc", "kappa"]
MASK_METRICS = ["mask_iou", "pointing", "saliency_auroc"]
LOWER_BETTER = {"ece", "loss"}  #: metrics where smaller is better (the test direction flips)
KEYS = ["dataset", "shot", "method", "seed"]
FORMATS = ("md", "csv", "latex")
TESTS = ("both", "t", "wilcoxon")


def collect(runs_dir: str | Path) -> pd.DataFrame:
    """One row per finished run below ``runs_dir`` (or ``runs_dir`` itself): keys, test metrics, mask metrics, folder.

    A run's method, seed and shot come from its metrics.json; its dataset from the experiment
    layout's folder (``<dataset>/<method>/shot-k/seed-s``, distinct per plan) or else from the
    data path in its config.toml, so ``medaug train --out runs/none-0``-style folders work too.
    Stage folders (a staged run's ``heated/``) are part of their run, not runs.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise MedaugError(f"{root}: no such folder; pass the folder `medaug run` wrote (e.g. runs/demo) or a run folder")
    rows, seen = [], {}
    for path in sorted(root.rglob("metrics.json")):
        if not path.is_file():
            continue
        m = _read_metrics(path)
        if m.get("stage"):
            continue
        row = {**run_keys(path, root, m), "run_dir": str(path.parent),
               "wall_s": m.get("wall_s", math.nan), "best_epoch": m.get("best_epoch"), "n_train": m.get("n_train", math.nan),
               "collapsed": int("collapse" in m)}
        key = tuple(row[k] for k in KEYS)
        if key in seen:
            raise MedaugError(f"{path.parent} and {seen[key]}: two runs of the same dataset, method, shot and seed "
                              f"({', '.join(map(str, key))}); report them from separate folders")
        seen[key] = path.parent
        row.update({k: v for k, v in m.get("test", {}).items() if isinstance(v, (int, float)) and k not in row})
        row.update({k: v for k, v in m.get("mask", {}).items() if isinstance(v, (int, float)) and k not in row})
        rows.append(row)
    if not rows:
        raise MedaugError(f"{root}: no finished runs (no metrics.json below it); pass a folder `medaug run` or `medaug train --out` wrote")
    return pd.DataFrame(rows)


def _read_metrics(path: Path) -> dict:
    try:
        m = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise MedaugError(f"{path}: not valid JSON; delete the run folder and run it again") from None
    if not isinstance(m, dict) or not isinstance(m.get("test"), dict) or not isinstance(m.get("method"), str):
        raise MedaugError(f"{path}: not a medaug metrics.json (expected an object with method and test); "
                          "remove it or run the run again")
    if isinstance(m.get("seed"), bool) or not isinstance(m.get("seed"), int):
        raise MedaugError(f"{path}: seed {m.get('seed')!r} is not an integer; remove the file or run the run again")
    return m


def run_keys(path: Path, root: Path, m: dict) -> dict:
    """dataset, method, shot and seed of the run whose metrics.json is ``path`` (see :func:`collect`)."""
    rel = path.parent.relative_to(root).parts
    shot = m.get("n_shot", 0)
    shot = "all" if not shot else str(shot)
    if len(rel) >= 4 and rel[-1].startswith("seed-") and rel[-2].startswith("shot-"):
        dataset = rel[-4]  # the plan's key: distinct even for datasets with the same folder name
    else:
        from .experiments import dataset_name
        from .train import read_toml

        train = read_toml(path.parent / "config.toml").get("train", {})
        data = train.get("data") if isinstance(train, dict) else None
        dataset = dataset_name(data, train.get("body_part", "all")) if isinstance(data, str) and data else "data"
    return {"dataset": dataset, "method": m["method"], "shot": shot, "seed": m["seed"]}


def shot_key(shot) -> tuple:
    """Sort key for shot labels: numbers ascending, then 'all'."""
    s = str(shot)
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def summarise(df: pd.DataFrame, metrics: list[str], baseline: str = "none", bootstrap: int = 0,
              ci_level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Long table: dataset, shot, method, metric, mean, std, n, diff vs baseline, p-values (Holm-adjusted).

    Paired tests use only the seeds both the method and the baseline have (``n_paired``).
    ``bootstrap`` > 0 adds a percentile bootstrap CI of the mean over seeds (``ci_lo``, ``ci_hi``)
    with that many resamples at ``ci_level``.
    """
    out = []
    for (dataset, shot), group in df.groupby(["dataset", "shot"], sort=True):
        base = group[group["method"] == baseline].set_index("seed")
        for method, runs in group.groupby("method", sort=False):
            runs = runs.set_index("seed")
            for metric in metrics:
                if metric not in runs or runs[metric].isna().all():
                    continue
                values = runs[metric].dropna().to_numpy(float)
                mean, std, n = mean_std(values)
                row = dict(dataset=dataset, shot=shot, method=method, metric=metric, mean=mean, std=std, n=n,
                           collapsed=int(runs["collapsed"].sum()) if "collapsed" in runs else 0)
                if bootstrap:
                    row["ci_lo"], row["ci_hi"] = bootstrap_ci(values, ci_level, bootstrap, seed)
                seeds = sorted(set(runs[metric].dropna().index) & set(base[metric].dropna().index)) if metric in base else []
                if method != baseline and seeds:
                    test = paired_tests(runs.loc[seeds, metric].to_numpy(float), base.loc[seeds, metric].to_numpy(float))
                    row.update(diff=test["mean_diff"], t_p=test["t_p"], wilcoxon_p=test["wilcoxon_p"], n_paired=test["n"])
                out.append(row)
    table = pd.DataFrame(out)
    if "t_p" in table:
        for metric, rows in table.groupby("metric"):
            table.loc[rows.index, "t_p_holm"] = holm(rows["t_p"].to_list())
            table.loc[rows.index, "wilcoxon_p_holm"] = holm(rows["wilcoxon_p"].to_list())
    return table


def mark_significance(summary: pd.DataFrame, level: float = 0.05, test: str = "both") -> pd.DataFrame:
    """Add ``better`` (beats the baseline at ``level``) and ``bold`` (best mean among those that do, per row).

    ``test``: 'both' (Holm-adjusted t-test and Wilcoxon p both < level; the default), 't' or 'wilcoxon'.
    """
    if test not in TESTS:
        raise MedaugError(f"--test {test!r}: choose {', '.join(TESTS)}")
    if not 0 < level < 1:
        raise MedaugError(f"--level {level}: choose a significance level in (0, 1), e.g. 0.05")
    s = summary.copy()
    s["better"] = False
    s["bold"] = False
    if s.empty or "diff" not in s:
        return s
    sign = np.where(s["metric"].isin(LOWER_BETTER), -1.0, 1.0)
    good = (s["diff"].fillna(0).to_numpy() * sign) > 0
    t_ok = s.get("t_p_holm", pd.Series(np.nan, index=s.index)).fillna(1).to_numpy() < level
    w_ok = s.get("wilcoxon_p_holm", pd.Series(np.nan, index=s.index)).fillna(1).to_numpy() < level
    ok = {"both": t_ok & w_ok, "t": t_ok, "wilcoxon": w_ok}[test]
    s["better"] = good & ok
    for _, rows in s[s["better"]].groupby(["dataset", "shot", "metric"]):
        lower = rows["metric"].iloc[0] in LOWER_BETTER
        s.loc[rows["mean"].idxmin() if lower else rows["mean"].idxmax(), "bold"] = True
    return s


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


# --- the main table: one block per metric, (dataset, shot) rows, methods as columns -------------

def table_cells(summary: pd.DataFrame, metric: str) -> tuple[list[tuple], list[str], dict]:
    """(rows [(dataset, shot)], methods, {(dataset, shot, method): summary row as dict}) for one metric."""
    rows = summary[summary["metric"] == metric]
    keys = sorted({(r.dataset, r.shot) for r in rows.itertuples()}, key=lambda k: (k[0], shot_key(k[1])))
    cells = {(r["dataset"], r["shot"], r["method"]): r.to_dict() for _, r in rows.iterrows()}
    return keys, method_order(rows["method"]), cells


def cell_text(r: dict, digits: int = 3, pm: str = "±") -> str:
    """'0.812 ± 0.010 (n=3)' plus ' [0.80, 0.82]' when the row has a bootstrap CI."""
    text = f"{r['mean']:.{digits}f} {pm} {r['std']:.{digits}f} (n={int(r['n'])})"
    if _num(r.get("ci_lo")):
        text += f" [{r['ci_lo']:.{digits}f}, {r['ci_hi']:.{digits}f}]"
    if r.get("collapsed"):
        text += f" COLLAPSED {int(r['collapsed'])}/{int(r['n'])}"
    return text


def table_legend(level: float, test: str = "both", baseline: str = "none", ci_level: float | None = None) -> str:
    which = {"both": "a paired t-test and a Wilcoxon signed-rank test", "t": "a paired t-test",
             "wilcoxon": "a Wilcoxon signed-rank test"}[test]
    text = (f"Mean ± sample std over seeds; n = seeds in the cell. Bold: the best method of the row among those that "
            f"beat `{baseline}` by {which} across seeds (two-sided, Holm-adjusted across the metric's table, "
            f"p < {level:g}); * = beats `{baseline}` but not the best such. A higher mean without a significant "
            f"test is not bold. COLLAPSED k/n: in k of the cell's runs the learned masks collapsed (kept < 1% or "
            f"> 99% of the image for 3 epochs; metrics.json 'collapse').")
    if ci_level:
        text += f" Brackets: {ci_level:.0%} percentile bootstrap CI of the mean over seeds (crude with few seeds)."
    return text


def main_markdown(summary: pd.DataFrame, metrics: list[str], digits: int = 3) -> str:
    out = []
    for metric in metrics:
        keys, methods, cells = table_cells(summary, metric)
        if not keys:
            continue
        out += [f"### {metric}" + (" (lower is better)" if metric in LOWER_BETTER else ""), "",
                "| dataset | shot | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
        for d, s in keys:
            row = []
            for m in methods:
                r = cells.get((d, s, m))
                text = "" if r is None else cell_text(r, digits)
                text = f"**{text}**" if r is not None and r.get("bold") else text + ("\\*" if r is not None and r.get("better") else "")
                row.append(text)
            out.append(f"| {d} | {s} | " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def main_csv(summary: pd.DataFrame, metrics: list[str], digits: int = 3) -> str:
    """Wide CSV: dataset, shot, metric, one 'mean ± std (n=k)' column per method, and the bold method ('best')."""
    records = []
    all_methods = method_order(summary["method"]) if not summary.empty else []
    for metric in metrics:
        keys, _, cells = table_cells(summary, metric)
        for d, s in keys:
            rec = {"dataset": d, "shot": s, "metric": metric}
            best = ""
            for m in all_methods:
                r = cells.get((d, s, m))
                rec[m] = "" if r is None else cell_text(r, digits)
                best = m if r is not None and r.get("bold") else best
            rec["best"] = best
            records.append(rec)
    return pd.DataFrame(records).to_csv(index=False)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}


def latex_escape(text) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def main_latex(summary: pd.DataFrame, metrics: list[str], digits: int = 3, caption: str = "") -> str:
    """One ``table``/``tabular`` per metric; plain LaTeX (no packages), names escaped, ± as ``$\\pm$``."""
    out = ["% medaug main table: mean $\\pm$ std over seeds (n seeds); bold = best of the methods that beat none",
           "% (paired t-test and Wilcoxon across seeds, Holm-adjusted). No packages needed."]
    for metric in metrics:
        keys, methods, cells = table_cells(summary, metric)
        if not keys:
            continue
        out += ["\\begin{table}[ht]", "\\centering",
                "\\begin{tabular}{ll" + "c" * len(methods) + "}", "\\hline",
                "dataset & shot & " + " & ".join(latex_escape(m) for m in methods) + " \\\\", "\\hline"]
        for d, s in keys:
            row = []
            for m in methods:
                r = cells.get((d, s, m))
                if r is None:
                    row.append("--")
                    continue
                body = f"{r['mean']:.{digits}f} \\pm {r['std']:.{digits}f}"
                body += f"^{{\\dagger{int(r['collapsed'])}}}" if r.get("collapsed") else ""
                body = f"$\\mathbf{{{body}}}$" if r.get("bold") else f"${body}$" + ("$^*$" if r.get("better") else "")
                ci = f" [{r['ci_lo']:.{digits}f}, {r['ci_hi']:.{digits}f}]" if _num(r.get("ci_lo")) else ""
                row.append(f"{body} ({int(r['n'])}){ci}")
            out.append(f"{latex_escape(d)} & {latex_escape(s)} & " + " & ".join(row) + " \\\\")
        cap = caption or f"Test {latex_escape(metric)}: mean $\\pm$ std over seeds (number of seeds in parentheses)."
        out += ["\\hline", "\\end{tabular}", f"\\caption{{{cap}}}",
                f"\\label{{tab:medaug-{metric.replace('_', '-')}}}", "\\end{table}", ""]
    return "\n".join(out) + "\n"


def format_main_table(summary: pd.DataFrame, metrics: list[str], fmt: str = "md", digits: int = 3) -> str:
    """The main table as 'md', 'csv' or 'latex' text (``summary`` from :func:`mark_significance`)."""
    if fmt not in FORMATS:
        raise MedaugError(f"--format {fmt!r}: choose md, csv or latex")
    if "bold" not in summary:
        summary = mark_significance(summary)
    return {"md": main_markdown, "csv": main_csv, "latex": main_latex}[fmt](summary, metrics, digits)


def report_metrics(df: pd.DataFrame, wanted: list[str] | None = None) -> list[str]:
    """The metrics a report shows: ``wanted`` (checked against the runs) or every main/study/mask metric present."""
    if wanted:
        missing = [m for m in wanted if m not in df]
        if missing:
            known = [c for c in df.columns if c not in KEYS + ["run_dir", "wall_s", "best_epoch", "n_train", "n", "collapsed"]]
            raise MedaugError(f"--metric {', '.join(missing)}: not in the runs' metrics.json; choose from {', '.join(known)}")
        return list(wanted)
    return [m for m in MAIN_METRICS + ["study_auroc", "study_kappa", "ece"] + MASK_METRICS if m in df and df[m].notna().any()]


def write_report(runs_dir: str | Path, out: str | Path | None = None, level: float = 0.05, *, fmt: str | None = None,
                 bootstrap: int = 0, ci_level: float = 0.95, test: str = "both", html: bool = False,
                 metrics: list[str] | None = None, baseline: str = "none") -> Path:
    """Write report.md, results.csv, summary.csv, main_table.* and figures for the runs below ``runs_dir``.

    ``baseline``: the method every other method is paired against (bold, *, p-values), e.g. the best
    classical augmentation instead of ``none``.

    ``fmt`` (md | csv | latex) also writes the main table alone as main_table.md/.csv/.tex;
    ``bootstrap`` > 0 adds bootstrap CIs with that many resamples; ``html`` writes report.html.
    """
    from .figures import learning_curves

    if fmt is not None and fmt not in FORMATS:
        raise MedaugError(f"--format {fmt!r}: choose md, csv or latex")
    if test not in TESTS:
        raise MedaugError(f"--test {test!r}: choose {', '.join(TESTS)}")
    if not 0 < level < 1:
        raise MedaugError(f"--level {level}: choose a significance level in (0, 1), e.g. 0.05")
    root = Path(runs_dir)
    out = Path(out) if out else root / "report"
    if bootstrap < 0:
        raise MedaugError(f"--bootstrap {bootstrap}: give 0 (no CIs) or a number of resamples, e.g. 2000")
    df = collect(root)
    if baseline != "none" and baseline not in set(df["method"]):  # without `none` runs nothing is tested (the checks say so)
        raise MedaugError(f"--baseline {baseline!r}: no runs of that method below {root}; "
                          f"choose one of {', '.join(method_order(df['method']))}")
    metrics = report_metrics(df, metrics)
    summary = mark_significance(summarise(df, metrics, baseline=baseline, bootstrap=bootstrap, ci_level=ci_level), level, test)
    output_folder(out, "report", flag="--out")
    write_text(out / "results.csv", df.to_csv(index=False))
    write_text(out / "summary.csv", summary.to_csv(index=False))
    if fmt:
        write_text(out / {"md": "main_table.md", "csv": "main_table.csv", "latex": "main_table.tex"}[fmt],
                   format_main_table(summary, metrics, fmt))

    lines = [f"# medaug report: {root}", "",
             f"{len(df)} runs; methods: {', '.join(method_order(df['method']))}; seeds per cell as n.",
             table_legend(level, test, baseline, ci_level=ci_level if bootstrap else None), "", "## Main table (test split)", "",
             main_markdown(summary, metrics)]
    for metric in metrics:
        tests = summary[(summary["metric"] == metric) & summary["diff"].notna()] if "diff" in summary else pd.DataFrame()
        if not tests.empty:
            lines += [f"## {metric}: paired tests against {baseline}", "",
                      f"| dataset | shot | method | diff vs {baseline} | t-test p | Wilcoxon p | Holm t p | Holm Wilcoxon p | n |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for _, r in tests.iterrows():
                lines.append(f"| {r['dataset']} | {r['shot']} | {r['method']} | {r['diff']:+.3f} | {_p(r['t_p'])} | "
                             f"{_p(r['wilcoxon_p'])} | {_p(r.get('t_p_holm'))} | {_p(r.get('wilcoxon_p_holm'))} | {r['n_paired']} |")
            lines.append("")

    figures = []
    histories = {}
    for method, runs in df.groupby("method"):
        histories[method] = [read_history(Path(d)) for d in runs["run_dir"]]
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
            save_with(out / name, lambda tmp, src=hist: shutil.copyfile(src, tmp))
            figures.append((f"{method}: masks of fixed validation images over epochs (seed {first['seed']})", name))
    lines += ["## Figures", ""] + [f"![{t}]({f})\n\n{t}\n" for t, f in figures]
    lines += synthetic_section(df, out)
    write_text(out / "report.md", "\n".join(lines) + "\n")
    if html:
        from .html_report import write_html

        write_html(root, out / "report.html", df=df, summary=summary, metrics=metrics, level=level, test=test,
                   ci_level=ci_level if bootstrap else None, baseline=baseline)
    return out


def synthetic_section(df: pd.DataFrame, out: Path) -> list[str]:
    """report.md lines on the synthetic images that ``generative`` runs trained on (one block per samples folder).

    From the samples folder (``medaug gen sample``): its per-class contact sheets; if ``medaug gen eval``
    was run on it (it records its output folder in ``samples.json``): the real-beside-synthetic
    contact sheets, conditional agreement, TSTR/TRTR and the near-chance warning of quality.json.
    """
    from .config import load_toml

    folders: dict[str, list[str]] = {}
    for run in df.loc[df["method"] == "generative", "run_dir"]:
        cfg_file = Path(run) / "config.toml"
        samples = load_toml(cfg_file).get("train", {}).get("method_options", {}).get("samples") if cfg_file.is_file() else None
        if samples:
            folders.setdefault(str(samples), []).append(run)
    if not folders:
        return []
    lines = ["## Synthetic images used by `generative`", ""]
    for i, (samples, runs) in enumerate(sorted(folders.items())):
        folder = Path(samples)
        lines += [f"### {samples} ({len(runs)} run{'s' if len(runs) > 1 else ''})", ""]
        info = json.loads((folder / "samples.json").read_text()) if (folder / "samples.json").is_file() else {}
        quality = Path(info["quality"]) / "quality.json" if info.get("quality") else None
        if quality is not None and quality.is_file():
            q = json.loads(quality.read_text())
            a = q.get("agreement")
            if a:
                if a.get("label_ignored"):
                    lines += [f"**WARNING: conditional agreement {a['balanced']:.1%} is near chance ({a['chance']:.0%}): "
                              "the generator ignores its class label.**", ""]
                lines += [f"Conditional agreement ({a['classifier']} trained on real): {a['balanced']:.1%} balanced; "
                          + ", ".join(f"{c} {v:.1%}" for c, v in a["per_class"].items()) + "."]
            if "tstr" in q:
                lines += [f"TSTR accuracy {q['tstr']['accuracy']:.3f} vs TRTR {q['trtr']['accuracy']:.3f}; FID {q['all']['fid']:.2f} "
                          f"on `{q['extractor']}` (`medaug gen eval`, {quality.parent})."]
            lines.append("")
            sheets = [(c, quality.parent / f) for c, f in q.get("contact_sheets", {}).items()]
        else:
            lines += [f"Not evaluated: `medaug gen eval --real DATA --fake {samples}` adds conditional agreement, TSTR "
                      "and contact sheets beside real images here.", ""]
            sheets = [(c, folder / f"contact_{c}.png") for c in info.get("classes", [])]
        for cls, sheet in sheets:
            if sheet.is_file():
                name = f"synthetic_{i}_{cls}.png"
                save_with(out / name, lambda tmp, src=sheet: shutil.copyfile(src, tmp))
                lines += [f"![{cls}]({name})\n", f"{cls}: {'real (left) beside synthetic (right)' if quality else 'synthetic samples'}\n"]
    return lines


def _num(value) -> bool:
    return isinstance(value, (int, float, np.floating)) and not math.isnan(value)


def _p(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def read_history(run: Path) -> list[dict]:
    """log.jsonl of a run folder as a list of per-epoch dicts ([] if absent)."""
    log = run / "log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []


_read_history = read_history  # old name


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
