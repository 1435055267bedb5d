"""The study's numbers, from the run folders' files alone: one row per run, mean +- std per cell,
paired tests against a baseline and the bold rule. Shared by :mod:`medaug.report` (Markdown, CSV,
LaTeX, PNG) and :mod:`medaug.html_report` (report.html), which import it and not each other.

``collect(runs_dir)`` reads every ``metrics.json`` below ``runs_dir`` into one row per run;
``summarise`` gives mean +- std per (dataset, shot, method) with paired tests of each method
against ``none`` across seeds (t-test and Wilcoxon, each Holm-adjusted across a metric's table);
``mark_significance`` decides which cells beat ``none`` and which one per row is bold.

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
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import MedaugError
from .metrics import OPERATING_POINT_DROP, operating_point_drop
from .stats import bootstrap_ci, holm, mean_std, paired_tests

MAIN_METRICS = ["accuracy", "balanced_accuracy", "macro_f1", "auroc", "kappa"]
ORDINAL_METRICS = ["qwk", "mae"]  #: runs with ordered classes (TrainConfig.ordinal) also have these
MASK_METRICS = ["mask_iou", "pointing", "saliency_auroc"]
LOWER_BETTER = {"ece", "loss", "mae"}  #: metrics where smaller is better (the test direction flips)
CLASS_METRICS = ("precision", "recall", "specificity", "f1")  #: per-class metrics of metrics.json's per_class
KEYS = ["dataset", "shot", "method", "seed"]
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
        row = {**run_keys(path, root, m), "base_method": m.get("base_method", m["method"]), "run_dir": str(path.parent),
               "wall_s": m.get("wall_s", math.nan), "best_epoch": m.get("best_epoch"), "n_train": m.get("n_train", math.nan),
               "collapsed": int("collapse" in m), "kept_start": int(bool((m.get("start") or {}).get("kept"))),
               "start_from": started_from(m), "start_valid_drop": start_valid_drop(m),
               "classifier_epochs": (m.get("budget") or {}).get("classifier_epochs", math.nan),
               "budget": (m.get("budget") or {}).get("mode", "")}
        key = tuple(row[k] for k in KEYS)
        if key in seen:
            raise MedaugError(f"{path.parent} and {seen[key]}: two runs of the same dataset, method, shot and seed "
                              f"({', '.join(map(str, key))}); report them from separate folders")
        seen[key] = path.parent
        values = {k: v for part in ("test", "mask") for k, v in _metric_values(path, m, part).items() if k not in row}
        row.update(values)
        row["nan_metrics"] = ",".join(sorted(k for k, v in values.items() if math.isnan(v)))  # counted per cell: NaN k/N
        rows.append(row)
    if not rows:
        raise MedaugError(f"{root}: no finished runs (no metrics.json below it); pass a folder `medaug run` or `medaug train --out` wrote")
    return pd.DataFrame(rows)


def _metric_values(path: Path, m: dict, part: str) -> dict[str, float]:
    """The numbers of metrics.json's ``part`` ('test', 'mask'); a string, boolean or null where a number should be
    is refused (never tabled as a number); NaN stays NaN (the report marks it); lists and tables are skipped."""
    section = m.get(part) or {}
    if not isinstance(section, dict):
        raise MedaugError(f"{path}: {part!r} is a {type(section).__name__}, not a table of metrics; remove the file or run the run again")
    out = {}
    for k, v in section.items():
        if isinstance(v, (bool, str)) or v is None:
            raise MedaugError(f"{path}: {part}.{k} is {v!r}, not a number (an edited or foreign file?); "
                              "remove the file or run the run again")
        if isinstance(v, (int, float)):
            out[k] = float(v) if isinstance(v, float) else v
    return out


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
                nan = int(sum(metric in str(v).split(",") for v in runs["nan_metrics"])) if "nan_metrics" in runs else 0
                if nan:  # runs whose metrics.json holds NaN for it: not in the mean, marked in the cell
                    row["n_nan"] = nan
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


def method_order(methods) -> list[str]:
    return ["none"] + sorted(m for m in set(methods) if m != "none") if "none" in set(methods) else sorted(set(methods))


def table_cells(summary: pd.DataFrame, metric: str) -> tuple[list[tuple], list[str], dict]:
    """(rows [(dataset, shot)], methods, {(dataset, shot, method): summary row as dict}) for one metric."""
    rows = summary[summary["metric"] == metric]
    keys = sorted({(r.dataset, r.shot) for r in rows.itertuples()}, key=lambda k: (k[0], shot_key(k[1])))
    cells = {(r["dataset"], r["shot"], r["method"]): r.to_dict() for _, r in rows.iterrows()}
    return keys, method_order(rows["method"]), cells


def cell_text(r: dict, digits: int = 3, pm: str = "±") -> str:
    """'0.812 ± 0.010 (n=3)' plus ' [0.80, 0.82]' when the row has a bootstrap CI."""
    text = f"{r['mean']:.{digits}f} {pm} {r['std']:.{digits}f} (n={int(r['n'])})"
    if is_number(r.get("ci_lo")):
        text += f" [{r['ci_lo']:.{digits}f}, {r['ci_hi']:.{digits}f}]"
    if r.get("collapsed"):
        text += f" COLLAPSED {int(r['collapsed'])}/{int(r['n'])}"
    if is_number(r.get("n_nan")) and r["n_nan"]:
        text += f" NaN {int(r['n_nan'])}/{int(r['n']) + int(r['n_nan'])}"
    return text


TEST_NAMES = {"both": "both the paired t-test and the Wilcoxon signed-rank test", "t": "the paired t-test",
              "wilcoxon": "the Wilcoxon signed-rank test"}


def rule_text(level: float, test: str = "both", baseline: str = "none") -> str:
    """The rule of :func:`mark_significance` in words: when a cell beats ``baseline`` (the console's * and the report's bold)."""
    return (f"beats `{baseline}`: the mean paired difference over seeds is in the metric's good direction and p < {level:g} "
            f"in {TEST_NAMES[test]} (two-sided, across seeds, Holm-adjusted over the metric's table)")


def power_note(summary: pd.DataFrame, level: float, test: str = "both") -> str:
    """'' or the sentence saying that with this few paired seeds the Wilcoxon test can never reach ``level``."""
    npair = summary["n_paired"].dropna() if "n_paired" in summary else pd.Series(dtype=float)
    if test not in ("both", "wilcoxon") or not len(npair) or (2.0 / 2 ** npair.max()) < level:
        return ""
    k = int(npair.max())
    return (f"with {k} paired seeds the smallest possible two-sided Wilcoxon p is 2/2^{k} = {2 / 2 ** k:.3g} >= {level:g}: "
            f"no cell can beat the baseline. Use 6 or more seeds (or --test t) to be able to detect a difference.")


def table_legend(level: float, test: str = "both", baseline: str = "none", ci_level: float | None = None) -> str:
    text = (f"Mean ± sample std over seeds; n = seeds in the cell. A method {rule_text(level, test, baseline)}. Bold: the best "
            f"method of the row among those that beat `{baseline}`; * = beats `{baseline}` but not the best such. A higher "
            f"mean without a significant test is not bold. COLLAPSED k/n: in k of the cell's runs the learned masks collapsed "
            f"(kept < 1% or > 99% of the image for 3 epochs; metrics.json 'collapse'). NaN k/N: in k of the cell's N runs "
            f"the metric is NaN in metrics.json (undefined there); the mean and the tests are over the other runs.")
    if ci_level:
        text += f" Brackets: {ci_level:.0%} percentile bootstrap CI of the mean over seeds (crude with few seeds)."
    return text


def start_from(runs: pd.DataFrame) -> str:
    """The method the two-stage ``runs`` (one method's rows of :func:`collect`) started from: ``none``, or ``classical``."""
    starts = sorted(set(runs["start_from"])) if "start_from" in runs else ["none"]
    return " / ".join(starts)


def run_notes(df: pd.DataFrame) -> list[str]:
    """Plain-language notes on the runs behind a table: (dataset, shot) cells whose methods trained for
    different budgets (classifier epochs from initialisation, metrics.json 'budget'), and methods whose
    two-stage runs kept their starting checkpoint (metrics.json 'start')."""
    notes = []
    if "classifier_epochs" in df:
        for (dataset, shot), group in df.groupby(["dataset", "shot"], sort=True):
            epochs = group.dropna(subset=["classifier_epochs"]).groupby("method")["classifier_epochs"].max()
            if epochs.nunique() > 1:
                shown = ", ".join(f"{m} {int(epochs[m])}" for m in method_order(epochs.index))
                modes = ", ".join(sorted({b for b in group["budget"] if b}))
                notes.append(f"Budgets differ in {dataset}, shot {shot}: classifier epochs from initialisation {shown} "
                             f"(budget {modes}); differences there mix the method with the extra training.")
    if "kept_start" in df:
        for method, runs in df.groupby("method"):
            kept = int(runs["kept_start"].sum())
            if kept:
                notes.append(f"{method} kept its starting checkpoint (the `{start_from(runs)}` baseline; no epoch of the method beat it "
                             f"on validation) in {kept}/{len(runs)} runs.")
    for method, runs in df.groupby("method"):
        note = operating_point_note(method, runs)
        if note:
            notes.append(note + ".")
    return notes


def report_metrics(df: pd.DataFrame, wanted: list[str] | None = None) -> list[str]:
    """The metrics a report shows: ``wanted`` (checked against the runs) or every main/study/mask metric present."""
    if wanted:
        known = [c for c in df.columns if c not in KEYS + ["base_method", "run_dir", "wall_s", "best_epoch", "n_train", "n",
                                                          "collapsed", "nan_metrics", "kept_start", "classifier_epochs", "budget"]]
        missing = [m for m in wanted if m not in known]
        if missing:
            raise MedaugError(f"--metric {', '.join(missing)}: not in the runs' metrics.json; choose from {', '.join(known)}")
        return list(wanted)
    return [m for m in MAIN_METRICS + ORDINAL_METRICS + ["study_auroc", "study_kappa", "ece"] + MASK_METRICS
            if m in df and df[m].notna().any()]


def is_number(value) -> bool:
    """A real number that is not NaN (numpy floats included)."""
    return isinstance(value, (int, float, np.floating)) and not math.isnan(value)


def epochs_trained(run: Path, m: dict | None = None, _depth: int = 0) -> dict:
    """How many epochs the run's classifier trained, from its files: ``best`` and ``epochs`` of its last
    stage (metrics.json best_epoch, epochs_run), ``total`` from initialisation, and ``parts`` [(count, what)]:
    every epoch of the baseline run it started from (its config's ``baseline``, counted the same way), of
    stage 1 of a staged run (``heated/``) and its own. ``text``: 'best/epochs' plus the total when other
    stages count, e.g. '10/10 (25 in all: 15 heated + 10 fine-tuning)'."""
    run = Path(run)
    if m is None:
        m = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    own, best = m.get("epochs_run"), m.get("best_epoch")
    if not isinstance(own, int):
        return {"best": best, "epochs": own, "total": None, "parts": [], "text": f"{best if best is not None else '?'}/?"}
    parts = []
    stages = m.get("stages") if isinstance(m.get("stages"), dict) else {}
    baseline = _baseline_of(run)
    if isinstance(stages.get("baseline_epochs"), int):  # budget equal: the none run's first baseline_epochs epochs
        parts.append((stages["baseline_epochs"], f"{started_from(m)} stage"))
    elif baseline is not None and _depth < 4 and (baseline / "metrics.json").is_file():  # budget paper: all of them
        b = epochs_trained(baseline, _depth=_depth + 1)["total"]
        if b:
            parts.append((b, f"baseline ({baseline.parent.parent.name if baseline.parent.name.startswith('shot-') else baseline.name})"))
    staged = "heated_epochs" in stages
    if staged:
        heated = _json(run / "heated" / "metrics.json").get("epochs_run", stages.get("heated_epochs"))
        if isinstance(heated, int):
            parts.append((heated, "heated"))
    parts.append((own, "fine-tuning" if staged else "own"))
    total = sum(n for n, _ in parts)
    text = f"{best}/{own}"
    if len(parts) > 1:
        text += f" ({total} in all: " + " + ".join(f"{n} {what}" for n, what in parts) + ")"
    return {"best": best, "epochs": own, "total": total, "parts": parts, "text": text}


def _json(path: Path) -> dict:
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def start_valid_drop(m: dict) -> float:
    """A two-stage run that replaced its start: how much validation balanced accuracy the chosen checkpoint lost
    against the start (metrics.json 'start.valid' vs 'valid'; > 0 worse). NaN for other runs."""
    start = m.get("start") or {}
    if not start or start.get("kept"):
        return math.nan
    return operating_point_drop(start.get("valid") or {}, m.get("valid") or {})


def operating_point_note(method: str, runs: pd.DataFrame) -> str | None:
    """A warning where some of ``method``'s two-stage ``runs`` (rows of :func:`collect`) replaced their start
    on the selection metric while losing more than OPERATING_POINT_DROP validation balanced accuracy."""
    if "start_valid_drop" not in runs:
        return None
    drops = runs["start_valid_drop"].dropna()
    worse = drops[drops > OPERATING_POINT_DROP]
    if worse.empty:
        return None
    return (f"{method}: in {len(worse)}/{len(runs)} runs the chosen checkpoint beat its starting checkpoint on the selection "
            f"metric (`monitor`) but lost up to {worse.max():.3f} validation balanced accuracy against it (more than "
            f"{OPERATING_POINT_DROP:g}): its operating point got worse (`monitor = \"balanced_accuracy\"` selects on it)")


def started_from(m: dict) -> str:
    """The method a two-stage run's metrics.json ``m`` says it started from (``start.from``; ``none`` in runs
    written before stacked methods existed, and in one-stage runs)."""
    return (m.get("start") or {}).get("from", "none")


def _baseline_of(run: Path) -> Path | None:
    """The baseline run folder a run started from (its config.toml's train.baseline), or None."""
    import tomllib

    try:
        train = tomllib.loads((run / "config.toml").read_text()).get("train", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    base = train.get("baseline") if isinstance(train, dict) else None
    return Path(base) if isinstance(base, str) and base else None


def read_history(run: Path) -> list[dict]:
    """log.jsonl of a run folder as a list of per-epoch dicts ([] if absent); a file that is not one JSON object
    per line (not UTF-8, truncated, edited) is one line naming it."""
    log = run / "log.jsonl"
    if not log.is_file():
        return []
    rows = []
    try:
        for n, line in enumerate(log.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"line {n} is not a JSON object")
                rows.append(row)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise MedaugError(f"{log}: not a medaug training log ({exc.__class__.__name__}: {str(exc)[:80]}); "
                          "delete the run folder and run it again (or remove the file: the report then has no curves for it)") from None
    return rows


def run_classes(run_dir: str | Path) -> dict | None:
    """A run's test ``per_class`` and ``confusion`` (:func:`medaug.metrics.class_report`): from its metrics.json, or
    for runs written before metrics.json held them, from predictions.npz and the run's classes; None without either."""
    from .metrics import class_report

    folder = Path(run_dir)
    m = _read_metrics(folder / "metrics.json")
    test, classes = m["test"], m.get("classes")
    if isinstance(test.get("per_class"), dict) and isinstance(test.get("confusion"), dict):
        return {"per_class": test["per_class"], "confusion": test["confusion"]}
    pred = folder / "predictions.npz"
    if not pred.is_file() or not isinstance(classes, list):
        return None
    with np.load(pred) as data:
        probs, labels = data["probs"], data["labels"]
    return class_report(labels, probs, classes) if probs.ndim == 2 and probs.shape[1] == len(classes) else None


def class_tables(df: pd.DataFrame, show: int = 5, max_confusion: int = 12) -> list[dict]:
    """Per (dataset, shot), per method: the per-class test metrics (:data:`CLASS_METRICS`), mean over seeds, and the
    confusion matrix summed over seeds (rows: true class, columns: predicted).

    Compact for many classes: with more than ``2 * show + 2`` classes only the ``show`` best and ``show`` worst by
    mean F1 are listed, and with more than ``max_confusion`` the confusion matrix is left out (metrics.json has it).
    Returns blocks {dataset, shot, methods: [{method, n, classes, rows: [{class, support, precision, ..., predicted}],
    note}]}; a method whose runs disagree on the classes, or have no per-class results, gets only a note.
    """
    blocks = []
    for (dataset, shot), group in sorted(df.groupby(["dataset", "shot"]), key=lambda kv: (kv[0][0], shot_key(kv[0][1]))):
        methods = []
        for method in method_order(group["method"]):
            runs = group[group["method"] == method].sort_values("seed")
            reports = [r for r in (run_classes(d) for d in runs["run_dir"]) if r is not None]
            if not reports:
                methods.append(dict(method=method, n=0, classes=[], rows=[], note="no per-class results in these runs"))
                continue
            names = list(reports[0]["confusion"]["classes"])
            if any(list(r["confusion"]["classes"]) != names for r in reports):
                methods.append(dict(method=method, n=len(reports), classes=[], rows=[],
                                    note="its runs have different classes (a different --classes mapping?); see each run"))
                continue
            counts = np.sum([np.asarray(r["confusion"]["counts"], np.int64) for r in reports], axis=0)
            rows = []
            for i, name in enumerate(names):
                values = [r["per_class"][name] for r in reports]
                row = {"class": name, "support": float(np.mean([v["support"] for v in values]))}
                row.update({k: float(np.mean([v[k] for v in values])) for k in CLASS_METRICS})
                row["predicted"] = counts[i].tolist() if len(names) <= max_confusion else None
                rows.append(row)
            note = ""
            if len(rows) > 2 * show + 2:
                ranked = sorted(rows, key=lambda r: -r["f1"])
                rows = ranked[:show] + ranked[-show:]
                note = f"the {show} best and {show} worst of {len(names)} classes by mean F1"
            if len(names) > max_confusion:
                note += ("; " if note else "") + f"confusion matrix of {len(names)} classes left out (metrics.json holds it)"
            methods.append(dict(method=method, n=len(reports), classes=names if len(names) <= max_confusion else [],
                                rows=rows, note=note))
        blocks.append(dict(dataset=dataset, shot=shot, methods=methods))
    return blocks


CLASS_LEGEND = ("Per method and class: precision, recall (sensitivity), specificity and F1 of the test split, one class "
                "against the rest, mean over the method's n seeds; n img: test images of the class (per seed). "
                "-> X: the confusion matrix summed over the n seeds (row: the true class; column X: predicted as X).")
