"""Paired tests across seeds (SciPy), multiple-comparison correction and summaries."""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
from scipy import stats


def paired_tests(a: Sequence[float], b: Sequence[float]) -> dict:
    """Method ``a`` vs baseline ``b``, paired by seed: mean difference, paired t-test and Wilcoxon (two-sided)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = int(len(a))
    out = {"n": n, "mean_diff": float(np.mean(a - b)) if n else math.nan, "t_stat": math.nan, "t_p": math.nan, "wilcoxon_p": math.nan}
    if n < 2:
        return out
    d = a - b
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if np.any(d != d[0]) or d[0] != 0:
            t = stats.ttest_rel(a, b)
            out.update(t_stat=float(t.statistic), t_p=float(t.pvalue))
        if np.any(d != 0):
            out["wilcoxon_p"] = float(stats.wilcoxon(a, b).pvalue)
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaNs pass through and do not count as tests)."""
    p = np.asarray(pvalues, float)
    out = np.full(len(p), np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    order = valid[np.argsort(p[valid])]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count."""
    v = np.asarray(values, float)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if n > 1 else 0.0, n


def bootstrap_ci(values: Sequence[float], level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean."""
    v = np.asarray(values, float)
    if len(v) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def format_mean_std(values: Sequence[float], digits: int = 3) -> str:
    mean, std, n = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f} (n={n})"
