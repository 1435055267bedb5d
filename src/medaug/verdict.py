"""``medaug compare``'s statistics, from the run folders and ``compare.json`` alone: racing on the
validation split and the verdict on the test split. Shared by :mod:`medaug.compare` (which runs the
rounds) and the reports (:mod:`medaug.report`, :mod:`medaug.html_report`), so ``medaug report`` on a
compare folder prints the same verdict from the same files.

Racing (:func:`race`), after each round of seeds from the third on: the *current best* is the method
with the best mean validation score over the seeds every remaining method has; every other remaining
method except ``none`` is tested against it, paired by seed, with a one-sided paired t-test of "it
cannot beat the best by ``delta`` or more" (H1: best + delta > method; ``delta`` 0: the best is better);
Holm's correction runs over the methods tested in that round; a method whose adjusted p is below
``alpha`` is dropped (its runs stay on disk; its test numbers are never shown). When every method left
then cannot beat ``none`` by ``delta`` (the same test against ``none``, Holm), the race is *settled*:
more seeds cannot make any of them a gain of ``delta``, and the rounds stop.

The verdict (:func:`decide`): the *validation choice* is the remaining method other than ``none`` with
the best mean validation score. It is recommended when it beats ``none`` on the test split by the
report's bold rule (:func:`medaug.results.mark_significance`: mean paired difference in the good
direction and the Holm-adjusted p-value(s) of the chosen test below ``level``, Holm over the remaining
methods against ``none``); else the verdict is "no method is significantly better than none". The test
split never picks the method. The best classical baseline is the remaining one of
:data:`CLASSICAL` with the best mean validation score.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from .errors import MedaugError
from .results import mark_significance, operating_point_note, start_from, summarise
from .stats import holm, mean_std

COMPARE_FILE = "compare.json"
CLASSICAL = ("classical", "randaugment", "trivialaugment", "mixup", "cutmix")  #: the classical baselines a verdict compares with
MIN_RACE_SEEDS = 3  #: racing tests from the third seed on (a paired t-test on 2 seeds has 1 degree of freedom)
DELTA = 0.01  #: compare's default smallest gain worth having (metric units): racing's indifference zone
SMALL_SPLIT = 20  #: images per class below which a validation or test split is too small to decide
TESTS_WORDS = {"t": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test", "both": "paired t-test and Wilcoxon signed-rank test"}


def read_compare(root: str | Path) -> dict | None:
    """``root/compare.json`` (checked), or None when ``root`` holds no compare."""
    path = Path(root) / COMPARE_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise MedaugError(f"{path}: not valid JSON; run the same `medaug compare` again to rewrite it") from None
    plan = info.get("plan") if isinstance(info, dict) else None
    if not isinstance(plan, dict) or not isinstance(plan.get("methods"), list) or not isinstance(info.get("metric"), str):
        raise MedaugError(f"{path}: not a medaug compare.json (no plan methods or metric); remove it or run `medaug compare` again")
    return info


def dropped(info: dict) -> dict[str, dict]:
    """Method -> its drop record (round, best, diff, p, p_holm, n) of a compare.json."""
    return {d["method"]: d for r in info.get("rounds", []) for d in r.get("dropped", [])}


def race_delta(info: dict) -> float:
    """The ``delta`` a compare raced with (compare.json choices; folders from before ``--delta`` raced with 0)."""
    return float((info.get("choices") or {}).get("delta", 0.0))


def settled_text(record: dict, metric: str) -> str:
    """Why a compare's rounds stopped early: a round record with ``settled`` tests (see :func:`race`)."""
    delta, tests = float(record.get("delta", 0.0)), record["settled"]
    each = "; ".join(f"{t['method']} {t['diff']:+.3f}, Holm p {_p(t['p_holm'])}" for t in tests)
    n = record["round"]  # round r has r seeds
    if not delta:
        return (f"every method left is significantly worse than none on validation {metric} ({each}; one-sided paired "
                f"t-tests over {n} seeds)")
    return (f"no method left can beat none by {delta:g} or more on validation {metric} ({each} against none; one-sided "
            f"paired t-tests over {n} seeds), so more seeds cannot make one a gain of {delta:g}")


def compared_runs(df: pd.DataFrame, info: dict) -> pd.DataFrame:
    """The runs a compare's tables and verdict use: its plan's methods that were not dropped (``none`` included)."""
    keep = [m for m in info["plan"]["methods"] if m not in dropped(info)]
    return df[df["method"].isin(keep)].reset_index(drop=True)


def one_sided_p(best: np.ndarray, other: np.ndarray) -> float:
    """p of the one-sided paired t-test "best > other" over seeds. Differences that are all equal (no spread:
    the t statistic is infinite or undefined) give 0 when positive and 1 otherwise; NaN below 2 seeds."""
    d = np.asarray(best, float) - np.asarray(other, float)
    if len(d) < 2 or np.isnan(d).any():
        return math.nan
    if np.ptp(d) <= 1e-12 * max(1.0, abs(float(d.mean()))):
        return 0.0 if d.mean() > 0 else 1.0
    return float(sps.ttest_rel(best, other, alternative="greater").pvalue)


def race(scores: dict[str, dict[int, float]], alpha: float = 0.05, keep: tuple[str, ...] = ("none",),
         min_seeds: int = MIN_RACE_SEEDS, delta: float = 0.0) -> dict:
    """One racing decision from validation scores (higher is better), method -> {seed: score}.

    Paired over the seeds every method has. Below ``min_seeds`` nothing is tested. Every method but the best
    and ``keep`` is tested for "it cannot beat the best by ``delta`` or more" (one-sided paired t-test, H1:
    best + delta > method; with ``delta`` 0: the best is better), Holm over the tested methods. Returns
    ``best``, ``n`` (seeds), ``means``, ``delta``, ``tests`` (per tested method its ``diff``, its mean minus
    the best's, one-sided ``p``, Holm-adjusted ``p_holm`` and ``dropped``: p_holm < alpha) and ``settled``:
    the tests of every method left after the drops (except ``none``) for "it cannot beat none by ``delta``",
    when all of them are significant (Holm), else None: then more seeds cannot make any a gain of ``delta``.
    Ties for the best go to the method listed first in ``scores``.
    """
    if not scores:
        return {"best": None, "n": 0, "means": {}, "delta": delta, "tests": [], "settled": None}
    seeds = sorted(set.intersection(*(set(s) for s in scores.values())))
    means = {m: float(np.mean([s[k] for k in seeds])) if seeds else math.nan for m, s in scores.items()}
    ranked = [m for m in scores if not math.isnan(means[m])]
    best = max(ranked, key=lambda m: means[m]) if ranked else None  # max keeps the first of equals
    if best is None or len(seeds) < min_seeds:
        return {"best": best, "n": len(seeds), "means": means, "delta": delta, "tests": [], "settled": None}

    def cannot_beat(reference: str, methods: list[str]) -> list[dict]:
        ps = [one_sided_p(np.array([scores[reference][k] + delta for k in seeds]), np.array([scores[m][k] for k in seeds]))
              for m in methods]
        return [{"method": m, "diff": means[m] - means[reference], "p": p, "p_holm": a,
                 "dropped": bool(not math.isnan(a) and a < alpha)} for m, p, a in zip(methods, ps, holm(ps))]

    tests = cannot_beat(best, [m for m in scores if m != best and m not in keep])
    left = [m for m in scores if m != "none" and m not in {t["method"] for t in tests if t["dropped"]}]
    settled = None
    if "none" in scores and left:
        vs_none = cannot_beat("none", left)
        if all(t["dropped"] for t in vs_none):  # "dropped" here means significant: nothing is dropped for it
            settled = [{k: v for k, v in t.items() if k != "dropped"} for t in vs_none]
    return {"best": best, "n": len(seeds), "means": means, "delta": delta, "tests": tests, "settled": settled}


def validation_scores(runs: pd.DataFrame, metric: str) -> dict[str, dict[int, float]]:
    """Method -> {seed: validation ``metric``} of the runs (rows with ``method``, ``seed``, ``run_dir``), read
    from each run's metrics.json ``valid`` block (only that block: racing never sees the test split)."""
    out: dict[str, dict[int, float]] = {}
    for row in runs.itertuples():
        value = valid_score(Path(row.run_dir), metric)
        out.setdefault(row.method, {})[int(row.seed)] = value
    return out


def valid_score(run: Path, metric: str) -> float:
    """A finished run's validation ``metric`` (NaN when undefined), from metrics.json."""
    try:
        m = json.loads((run / "metrics.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise MedaugError(f"{run / 'metrics.json'}: unreadable; delete the run folder and run the compare again") from None
    value = (m.get("valid") or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def paired(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, float]:
    """The (1 - level) two-sided t confidence interval of the mean paired difference a - b (NaN below 2 pairs)."""
    if len(a) < 2:
        return math.nan, math.nan
    d = np.asarray(a, float) - np.asarray(b, float)
    if np.ptp(d) <= 1e-12 * max(1.0, abs(float(d.mean()))):
        return float(d.mean()), float(d.mean())
    ci = sps.ttest_rel(a, b).confidence_interval(1 - level)
    return float(ci.low), float(ci.high)


def _gain(runs: pd.DataFrame, method: str, baseline: str, metric: str, level: float, test: str,
          family: list[str]) -> dict | None:
    """``method`` against ``baseline`` on the test split, paired by seed: diff, CI, the rule's Holm-adjusted p
    (Holm over ``family`` against that baseline), n, and whether it beats the baseline by the bold rule."""
    rows = runs[runs["method"].isin(family + [baseline])]
    summary = mark_significance(summarise(rows, [metric], baseline=baseline), level, test)
    hit = summary[(summary["method"] == method) & (summary["metric"] == metric)]
    if hit.empty or "diff" not in hit or pd.isna(hit.iloc[0].get("diff")):
        return None
    r = hit.iloc[0]
    a, b = (rows[rows["method"] == m].set_index("seed")[metric].dropna() for m in (method, baseline))
    seeds = sorted(set(a.index) & set(b.index))
    lo, hi = paired(a.loc[seeds].to_numpy(float), b.loc[seeds].to_numpy(float), level)
    return {"method": method, "baseline": baseline, "diff": float(r["diff"]), "ci_lo": lo, "ci_hi": hi, "n": len(seeds),
            "t_p_holm": _num(r.get("t_p_holm")), "wilcoxon_p_holm": _num(r.get("wilcoxon_p_holm")),
            "better": bool(r["better"])}


def _num(value) -> float:
    return float(value) if isinstance(value, (int, float, np.floating)) and not pd.isna(value) else math.nan


def decide(df: pd.DataFrame, info: dict) -> dict:
    """The verdict of a compare from its runs (``collect`` rows) and compare.json ``info``: a dict with the
    validation choice, the recommendation (or None), its gains over none and over the best classical baseline,
    the other remaining methods that beat none on test, the drops, the warnings and the paragraph ``text``."""
    metric, level, test = info["metric"], float(info.get("level", 0.05)), info.get("test", "t")
    runs = compared_runs(df, info)
    order = [m for m in info["plan"]["methods"] if m in set(runs["method"])]
    valid = validation_scores(runs, metric)
    means = {m: mean_std([v for v in valid.get(m, {}).values() if not math.isnan(v)])[0] for m in order}
    others = [m for m in order if m != "none" and not math.isnan(means[m])]
    choice = max(others, key=lambda m: means[m]) if others else None
    classical = [m for m in order if m in CLASSICAL and not math.isnan(means[m])]
    best_classical = max(classical, key=lambda m: means[m]) if classical else None
    family = [m for m in order if m != "none"]
    vs_none = _gain(runs, choice, "none", metric, level, test, family) if choice and "none" in order else None
    beats = []
    if "none" in order and family:
        summary = mark_significance(summarise(runs, [metric], baseline="none"), level, test)
        beats = [m for m in summary.loc[summary["better"] & (summary["metric"] == metric), "method"]]
    recommended = choice if vs_none and vs_none["better"] else None
    vs_classical = None
    if best_classical and choice and best_classical != choice:
        vs_classical = _gain(runs, choice, best_classical, metric, level, test, [m for m in order if m != best_classical])
    classical_vs_none = (_gain(runs, best_classical, "none", metric, level, test, family)
                         if best_classical and best_classical != choice and "none" in order else None)
    n_seeds = int(runs.groupby("method")["seed"].nunique().min()) if len(runs) else 0
    v = {"metric": metric, "level": level, "test": test, "seeds": n_seeds, "methods": order,
         "valid_means": {m: means[m] for m in order}, "choice": choice, "recommended": recommended,
         "vs_none": vs_none, "best_classical": best_classical, "vs_classical": vs_classical,
         "classical_vs_none": classical_vs_none, "beat_none": beats,
         "dropped": sorted(dropped(info).values(), key=lambda d: (d["round"], d["method"])), "delta": race_delta(info),
         "stopped": next(({"round": r["round"], "text": settled_text(r, metric)} for r in info.get("rounds", [])
                          if r.get("settled")), None),
         "warnings": warnings(runs, info, n_seeds)}
    v["text"] = verdict_text(v)
    return v


def warnings(runs: pd.DataFrame, info: dict, n_seeds: int) -> list[str]:
    """What a reader must know before trusting the verdict: collapsed policies, runs that kept their starting
    checkpoint, a generator that ignores its label, splits too small to decide, tests that cannot reach the level."""
    out = []
    for method, group in runs.groupby("method", sort=False):
        n = len(group)
        if "collapsed" in group and group["collapsed"].sum():
            out.append(f"{method}: the learned masks collapsed in {int(group['collapsed'].sum())}/{n} runs (metrics.json "
                       "'collapse'): its numbers are those of a classifier trained without a working policy")
        if "kept_start" in group and group["kept_start"].sum():
            out.append(f"{method} kept its starting checkpoint (the `{start_from(group)}` baseline: no epoch of the method beat it on "
                       f"validation) in {int(group['kept_start'].sum())}/{n} runs (metrics.json 'start.kept')")
        note = operating_point_note(method, group)
        if note:
            out.append(note)
    samples = (info.get("generator") or {}).get("samples")
    if samples:
        agreement = generator_agreement(samples)
        if agreement is None:
            out.append(f"the generator's samples ({samples}) were not evaluated: whether they follow their class label "
                       "is unknown (`medaug gen eval --real DATA --fake SAMPLES` measures it)")
        elif agreement.get("label_ignored"):
            out.append(f"the generator ignores its class label (conditional agreement {agreement['balanced']:.1%}, near "
                       f"chance {agreement['chance']:.0%}; `medaug gen eval` of {samples}): `generative` trains on "
                       "images whose labels mean nothing")
    counts = (info.get("data") or {}).get("counts") or {}
    for split in ("valid", "test"):
        small = {c: n for c, n in (counts.get(split) or {}).items() if n < SMALL_SPLIT}
        if small:
            listed = ", ".join(f"{c} {n}" for c, n in small.items())
            out.append(f"the {'validation' if split == 'valid' else 'test'} split is too small to decide: {listed} images "
                       f"(fewer than {SMALL_SPLIT} per class); one image moves a class's accuracy by "
                       f"{1 / max(1, min(small.values())):.2f}")
    test = info.get("test", "t")
    level = float(info.get("level", 0.05))
    if test in ("both", "wilcoxon") and n_seeds and 2.0 / 2 ** n_seeds >= level:
        out.append(f"with {n_seeds} seeds the two-sided Wilcoxon test cannot go below p = {2 / 2 ** n_seeds:.3g} >= {level:g}: "
                   "no method can be recommended under --test "
                   f"{test}; use 6 or more seeds or --test t")
    return out


def generator_agreement(samples: str) -> dict | None:
    """The conditional agreement ``medaug gen eval`` measured for a samples folder (quality.json 'agreement':
    balanced, chance, label_ignored), or None when the folder was not evaluated."""
    info_file = Path(samples) / "samples.json"
    try:
        info = json.loads(info_file.read_text()) if info_file.is_file() else {}
        quality = Path(info["quality"]) / "quality.json" if isinstance(info.get("quality"), str) else None
        agreement = json.loads(quality.read_text()).get("agreement") if quality and quality.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return agreement if isinstance(agreement, dict) and "label_ignored" in agreement else None


def _p_text(g: dict, test: str) -> str:
    parts = []
    if test in ("t", "both"):
        parts.append(f"t-test p {_p(g['t_p_holm'])}")
    if test in ("wilcoxon", "both"):
        parts.append(f"Wilcoxon p {_p(g['wilcoxon_p_holm'])}")
    return "Holm-adjusted " + " and ".join(parts)


def _p(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3g}"


def _gain_text(g: dict, test: str, level: float) -> str:
    interval = "CI n/a" if math.isnan(g["ci_lo"]) else f"{1 - level:.0%} CI {g['ci_lo']:+.3f} to {g['ci_hi']:+.3f}"
    return f"{g['diff']:+.3f} ({interval}; {_p_text(g, test)}; n = {g['n']} seeds)"


def verdict_text(v: dict) -> str:
    """The verdict as one plain-text paragraph (the console, report.md and report.html print it as is)."""
    metric, test, level = v["metric"], v["test"], v["level"]
    k = len([m for m in v["methods"] if m != "none"])
    rule = (f"test {metric}, paired over {v['seeds']} seeds; {TESTS_WORDS[test]}, Holm-adjusted over the "
            f"{k} remaining method{'s' if k != 1 else ''} against none, level {level:g}")
    if v["choice"] is None:
        head = ("Verdict: no method is significantly better than none (every other method was dropped in racing: "
                + (f"none could beat the best by {v['delta']:g} or more" if v.get("delta") else "significantly worse than the best")
                + f" on validation {metric}).")
        return " ".join([head, *_tail(v)])
    choice, g = v["choice"], v["vs_none"]
    best_valid = f"the best remaining method on validation {metric} ({v['valid_means'][choice]:.3f})"
    if v["recommended"]:
        head = (f"Verdict: train with {choice}. It was {best_valid}, and it beats none on the test split: "
                f"{_gain_text(g, test, level)} ({rule}).")
    else:
        gain = _gain_text(g, test, level) if g else "no paired test (no common seeds with none)"
        head = (f"Verdict: no method is significantly better than none ({rule}). The validation choice, {choice}, "
                f"{best_valid}, differs from none on the test split by {gain}.")
        extra = [m for m in v["beat_none"] if m != choice]
        if extra:
            head += (f" {', '.join(extra)} beat{'s' if len(extra) == 1 else ''} none on the test split but "
                     f"{'was' if len(extra) == 1 else 'were'} not the validation choice; picking it by its test score "
                     "would be choosing on the test split.")
    parts = [head]
    bc = v["best_classical"]
    if bc is None:
        parts.append("No classical baseline remained (all dropped in racing or not planned).")
    elif bc == choice:
        parts.append(f"{choice} is itself the best classical baseline on validation.")
    else:
        gc = v["vs_classical"]
        parts.append(f"Against the best classical baseline on validation, {bc}: "
                     + (_gain_text(gc, test, level) if gc else "no paired test") + ".")
        if v["classical_vs_none"]:
            parts.append(f"{bc} against none: {_gain_text(v['classical_vs_none'], test, level)}.")
    return " ".join(parts + _tail(v))


def _tail(v: dict) -> list[str]:
    out = []
    if v.get("stopped"):
        out.append(f"The race stopped after round {v['stopped']['round']}: {v['stopped']['text']}.")
    if v["dropped"]:
        why = (f"unable to beat the best by {v['delta']:g} or more on validation" if v.get("delta")
               else "significantly worse than the best on validation")
        out.append(f"Dropped in racing ({why}; test numbers not shown): "
                   + "; ".join(f"{d['method']} after round {d['round']} ({d['diff']:+.3f} vs {d['best']}, Holm p {_p(d['p_holm'])})"
                               for d in v["dropped"]) + ".")
    if v["warnings"]:
        out.append("Warnings: " + "; ".join(v["warnings"]) + ".")
    return out


def report_view(df: pd.DataFrame, info: dict) -> dict:
    """What a report shows of a compare (``df``: every run of the folder): the verdict paragraph (once the last
    round has finished), the drops, the plan and its estimate in words, and a note on what the tables hold."""
    drops = sorted(dropped(info).values(), key=lambda d: (d["round"], d["method"]))
    if info.get("status") == "done":
        v = decide(df, info)
        text, warns = v["text"], v["warnings"]
    else:
        text = (f"No verdict yet: the compare is not finished ({len(info.get('rounds', []))} round(s) done); run the same "
                "`medaug compare` again to continue it. The tables below hold the finished runs of the methods racing kept.")
        warns = []
    plan, est = info["plan"], info.get("estimate") or {}
    train = plan.get("train") or {}
    words = (f"{', '.join(plan['methods'])} x up to {info.get('seeds_run', plan.get('seeds'))} seeds, {train.get('model')} at "
             f"{train.get('size')} px, {train.get('epochs')} epochs each (equal budgets); selection and racing on validation "
             f"{info['metric']}.")
    if isinstance(est.get("total_s"), (int, float)):
        words += f" Estimated before training at {est['total_s'] / 60:.1f} min on {est.get('device', '?')} without racing"
        words += f"; wall time of the compare so far {float(info.get('spent_s', 0)) / 60:.1f} min."
    if est.get("cuts"):
        words += " " + "; ".join(est["cuts"]) + "."
    n_out = int(df["method"].isin([d["method"] for d in drops]).sum())
    note = ("the tables hold only the methods racing kept, and none; "
            + (f"{n_out} run(s) of the dropped methods stay on disk and are left out (compare.json)." if n_out
               else "no method was dropped."))
    delta = race_delta(info)
    rule = (f"p: one-sided paired t-test of H1 best + {delta:g} > method (it cannot beat the best by {delta:g})" if delta
            else "p: one-sided paired t-test of H1 the best > method")
    rule += ", Holm over the methods tested in that round"
    return {"text": text, "warnings": warns, "drops": drops, "metric": info["metric"], "plan": words, "note": note,
            "drop_rule": rule}
