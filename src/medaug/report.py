"""Report files of a study: report.md, results.csv, summary.csv, main_table.{md,csv,tex} and PNG
figures (and report.html with ``html=True``, see :mod:`medaug.html_report`).

The numbers (``collect``, ``summarise``, ``mark_significance`` and the bold rule) live in
:mod:`medaug.results` and are re-exported here; ``format_main_table`` renders the main table as
Markdown, CSV or LaTeX; ``write_report`` writes the folder.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import MedaugError
from .io_utils import check_output_path, output_folder, save_with, staged, write_text
from .results import (CLASS_LEGEND, CLASS_METRICS, KEYS, LOWER_BETTER, MAIN_METRICS, MASK_METRICS, TESTS,  # noqa: F401  (public here too)
                      cell_text, class_tables, collect, is_number, mark_significance, method_order, power_note, read_history,
                      report_metrics, rule_text, run_keys, run_notes, shot_key, summarise, table_cells, table_legend)

FORMATS = ("md", "csv", "latex")


def wide_table(summary: pd.DataFrame, metric: str, digits: int = 3) -> pd.DataFrame:
    """Methods as columns, (dataset, shot) as rows, cells 'mean ± std (n=k)'."""
    rows = summary[summary["metric"] == metric]
    if rows.empty:
        return pd.DataFrame()
    cell = rows.apply(lambda r: f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f} (n={r['n']})", axis=1)
    table = rows.assign(cell=cell).pivot_table(index=["dataset", "shot"], columns="method", values="cell", aggfunc="first")
    order = ["none"] + sorted(c for c in table.columns if c != "none")
    return table[[c for c in order if c in table.columns]]


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
                body += f"\\,\\mathrm{{NaN}}\\,{int(r['n_nan'])}" if is_number(r.get("n_nan")) and r["n_nan"] else ""
                body = f"$\\mathbf{{{body}}}$" if r.get("bold") else f"${body}$" + ("$^*$" if r.get("better") else "")
                ci = f" [{r['ci_lo']:.{digits}f}, {r['ci_hi']:.{digits}f}]" if is_number(r.get("ci_lo")) else ""
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


def write_report(runs_dir: str | Path, out: str | Path | None = None, level: float = 0.05, *, fmt: str | None = None,
                 bootstrap: int = 0, ci_level: float = 0.95, test: str = "both", html: bool = False,
                 metrics: list[str] | None = None, baseline: str = "none") -> Path:
    """Write report.md, results.csv, summary.csv, main_table.* and figures for the runs below ``runs_dir``.

    ``baseline``: the method every other method is paired against (bold, *, p-values), e.g. the best
    classical augmentation instead of ``none``.

    ``fmt`` (md | csv | latex) also writes the main table alone as main_table.md/.csv/.tex;
    ``bootstrap`` > 0 adds bootstrap CIs with that many resamples; ``html`` writes report.html.
    """
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
    check_output_path(out, "--out")  # before any work
    df, compare = compare_view(root, collect(root))
    if bootstrap:  # stats.bootstrap_ci: int64 indices and float64 values [bootstrap, n], the means and a sorted copy
        from .device import check_memory

        n = int(df.groupby(["dataset", "shot", "method"]).size().max())
        check_memory(bootstrap * (2 * n + 2) * 8, f"--bootstrap {bootstrap}: {bootstrap} resamples of up to {n} seeds",
                     "use fewer resamples, e.g. 2000")
    if baseline != "none" and baseline not in set(df["method"]):  # without `none` runs nothing is tested (the checks say so)
        raise MedaugError(f"--baseline {baseline!r}: no runs of that method below {root}; "
                          f"choose one of {', '.join(method_order(df['method']))}")
    metrics = report_metrics(df, metrics)
    summary = mark_significance(summarise(df, metrics, baseline=baseline, bootstrap=bootstrap, ci_level=ci_level), level, test)
    histories = {}  # read (and checked) before anything is written
    for method, runs in df.groupby("method"):
        histories[method] = [read_history(Path(d)) for d in runs["run_dir"]]
    final = output_folder(out, "report", flag="--out")
    with staged(final, "report.md") as tmp:  # built beside it, then moved in: nothing half-written
        _write_files(tmp, root, df, summary, metrics, level, test, fmt, bootstrap, ci_level, html, baseline, histories, compare)
    return final


def _write_files(out: Path, root: Path, df: pd.DataFrame, summary: pd.DataFrame, metrics: list[str], level: float,
                 test: str, fmt: str | None, bootstrap: int, ci_level: float, html: bool, baseline: str,
                 histories: dict[str, list], compare: dict | None) -> Path:
    """The report's files in the folder ``out`` (see :func:`write_report`); ``compare``: a compare folder's view."""
    from .figures import learning_curves

    write_text(out / "results.csv", df.to_csv(index=False))
    write_text(out / "summary.csv", summary.to_csv(index=False))
    if fmt:
        write_text(out / {"md": "main_table.md", "csv": "main_table.csv", "latex": "main_table.tex"}[fmt],
                   format_main_table(summary, metrics, fmt))

    lines = [f"# medaug report: {root}", "", *compare_markdown(compare),
             f"{len(df)} runs; methods: {', '.join(method_order(df['method']))}; seeds per cell as n.",
             table_legend(level, test, baseline, ci_level=ci_level if bootstrap else None)
             + (" " + power_note(summary, level, test) if power_note(summary, level, test) else ""), "",
             *[f"Note: {n}\n" for n in run_notes(df)], "## Main table (test split)", "", main_markdown(summary, metrics)]
    nan_runs = df[df["nan_metrics"] != ""] if "nan_metrics" in df else df.iloc[:0]
    if len(nan_runs):
        lines += ["NaN values (not numbers; left out of the means and tests): "
                  + "; ".join(f"{r['run_dir']}: {r['nan_metrics'].replace(',', ', ')}" for _, r in nan_runs.iterrows()), ""]
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

    lines += class_markdown(class_tables(df))
    figures = []
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
                   ci_level=ci_level if bootstrap else None, baseline=baseline, compare=compare)
    return out


def class_markdown(blocks: list[dict], digits: int = 3) -> list[str]:
    """report.md lines of the per-class section (:func:`medaug.results.class_tables`): one table per method, rows the
    true classes, the per-class metrics (mean over seeds) then the confusion matrix summed over seeds."""
    if not blocks:
        return []
    lines = ["## Per class (test split)", "", CLASS_LEGEND, ""]
    for block in blocks:
        lines += [f"### {block['dataset']}, shot {block['shot']}", ""]
        for m in block["methods"]:
            head = f"**{m['method']}** (n={m['n']})" + (f": {m['note']}" if m["note"] else "")
            lines += [head, ""]
            if not m["rows"]:
                continue
            cols = ["class", "n img", "precision", "recall", "specificity", "F1", *(f"-> {c}" for c in m["classes"])]
            lines += ["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 1)]
            for r in m["rows"]:
                support = f"{r['support']:.0f}" if float(r["support"]).is_integer() else f"{r['support']:.1f}"
                cells = [r["class"], support, *(f"{r[k]:.{digits}f}" for k in CLASS_METRICS)]
                cells += [str(v) for v in r["predicted"]] if r["predicted"] is not None and m["classes"] else []
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def compare_view(root: Path, df: pd.DataFrame) -> tuple[pd.DataFrame, dict | None]:
    """The runs a report shows and, for a ``medaug compare`` folder (compare.json at ``root``), the compare's
    report view (:func:`medaug.verdict.report_view`): its tables hold only the methods racing kept (and ``none``);
    a dropped method's test numbers are never shown."""
    from .verdict import compared_runs, read_compare, report_view

    info = read_compare(root)
    if info is None:
        return df, None
    kept = compared_runs(df, info)
    if kept.empty:
        raise MedaugError(f"{root}: the compare has no finished runs of the methods it kept yet; run `medaug compare` again")
    return kept, report_view(df, info)


def compare_markdown(view: dict | None) -> list[str]:
    """report.md's first section for a compare folder: the verdict, the racing drops, the plan and its estimate."""
    if view is None:
        return []
    lines = ["## Verdict (medaug compare)", "", view["text"], ""]
    if view["drops"]:
        lines += ["### Dropped in racing (validation split)", "",
                  f"| method | after round | mean validation {view['metric']} vs the best | best | one-sided paired t-test p | Holm p | seeds |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {d['method']} | {d['round']} | {d['diff']:+.4f} | {d['best']} | {_p(d['p'])} | {_p(d['p_holm'])} | {d['n']} |"
                  for d in view["drops"]]
        lines += ["", view["drop_rule"] + "."]
        lines.append("")
    lines += [f"Plan: {view['plan']}", "", f"Note: {view['note']}", ""]
    return lines


def synthetic_section(df: pd.DataFrame, out: Path) -> list[str]:
    """report.md lines on the synthetic images that ``generative`` runs trained on (one block per samples folder).

    From the samples folder (``medaug gen sample``): its per-class contact sheets; if ``medaug gen eval``
    was run on it (it records its output folder in ``samples.json``): the real-beside-synthetic
    contact sheets, conditional agreement, TSTR/TRTR and the near-chance warning of quality.json.
    """
    from .config import load_toml

    folders: dict[str, list[str]] = {}
    for run in df.loc[df["base_method"] == "generative", "run_dir"]:  # variants too (generative+classical)
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


def _p(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


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
