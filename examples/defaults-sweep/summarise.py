"""Validation-split comparison of method variants against their defaults (docs/apga.md, "Defaults checked on
two real datasets"). Reads the runs of examples/defaults-sweep/*.toml; never reads a test split.

    python examples/defaults-sweep/summarise.py runs/sweep-pneumonia runs/sweep-knee

For each run folder: mean validation AUROC and balanced accuracy per method, how often a two-stage run kept its
start, and each variant minus its default (a variant is a [methods.NAME] alias of a method) paired over seeds.
"""
import json
import statistics
import sys
from pathlib import Path

from scipy import stats

METRICS = ("auroc", "balanced_accuracy")


def load(root: Path) -> dict[tuple[str, int], dict]:
    runs = {}
    for f in root.rglob("metrics.json"):
        m = json.loads(f.read_text())
        if not m.get("stage"):
            runs[(f.parts[-4], m["seed"])] = {"base": m.get("base_method", m["method"]), **{k: m["valid"][k] for k in METRICS},
                                              "kept": bool((m.get("start") or {}).get("kept"))}
    return runs


def paired(runs: dict, name: str, ref: str, metric: str) -> str:
    seeds = sorted(s for (m, s) in runs if m == name and (ref, s) in runs)
    diffs = [runs[(name, s)][metric] - runs[(ref, s)][metric] for s in seeds]
    p = stats.ttest_1samp(diffs, 0).pvalue if len(diffs) > 1 and len(set(diffs)) > 1 else float("nan")
    return f"{statistics.mean(diffs):+.4f} (t-test p {p:.2f}, n {len(diffs)})"


for folder in map(Path, sys.argv[1:]):
    runs = load(folder)
    names = sorted({m for m, _ in runs}, key=lambda m: (m != "none", m))
    print(f"== {folder}: validation split, mean over seeds")
    for name in names:
        rows = [v for (m, _), v in runs.items() if m == name]
        means = "  ".join(f"{k} {statistics.mean(r[k] for r in rows):.4f}" for k in METRICS)
        print(f"  {name:16s} n {len(rows)}  {means}  kept start {sum(r['kept'] for r in rows)}/{len(rows)}")
    for name in names:
        base = next(v["base"] for (m, _), v in runs.items() if m == name)
        ref = base if name != base else "none"
        if name != "none":
            print(f"  {name} - {ref}: " + "; ".join(f"{k} {paired(runs, name, ref, k)}" for k in METRICS))
