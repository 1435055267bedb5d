"""Metrics and statistics against hand computations and SciPy / scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from medaug.metrics import classification_metrics, confusion, expected_calibration_error, mask_metrics, per_class_table
from medaug.stats import bootstrap_ci, holm, mean_std, paired_tests


def onehotish(pred, k=2, conf=0.9):
    p = np.full((len(pred), k), (1 - conf) / (k - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


def test_binary_metrics_by_hand():
    y = np.array([0, 0, 1, 1])
    m = classification_metrics(y, onehotish(np.array([0, 1, 1, 1])))
    assert m["accuracy"] == 0.75
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    assert m["kappa"] == pytest.approx(0.5)  # po = .75, pe = .5
    assert m["auroc"] == pytest.approx(0.75)
    assert m["loss"] == pytest.approx(-(3 * math.log(0.9) + math.log(0.1)) / 4)


def test_auroc_undefined_with_one_class_is_nan_with_a_warning():
    m = classification_metrics(np.zeros(5, int), onehotish(np.array([0, 0, 1, 0, 0])))
    assert math.isnan(m["auroc"]) and "auroc undefined" in m["warnings"][0]


def test_study_level_uses_mean_probability_per_study():
    y = np.array([1, 1, 1, 0])
    probs = np.array([[0.2, 0.8], [0.7, 0.3], [0.8, 0.2], [0.9, 0.1]])
    studies = np.array(["s1", "s1", "s1", "s2"])  # s1 mean P(pos) = 0.433 -> negative, wrong
    m = classification_metrics(y, probs, studies)
    assert m["accuracy"] == 0.5 and m["study_n"] == 2
    assert m["study_accuracy"] == 0.5
    probs[1:3] = [[0.55, 0.45], [0.6, 0.4]]  # same image-level accuracy; s1 mean P(pos) = 0.55 -> right
    m = classification_metrics(y, probs, studies)
    assert m["accuracy"] == 0.5 and m["study_accuracy"] == 1.0


def test_multiclass_per_class_and_confusion():
    y = np.array([0, 1, 2, 2])
    probs = onehotish(np.array([0, 2, 2, 2]), k=3)
    m = classification_metrics(y, probs)
    assert m["accuracy"] == 0.75 and not math.isnan(m["auroc_ovo"])
    assert confusion(y, probs, 3).tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 2]]
    table = per_class_table(y, probs, ["a", "b", "c"])
    assert table.loc[1, "recall"] == 0 and table.loc[2, "support"] == 2


def test_ece_calibrated_vs_overconfident():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1, 20000)
    correct = rng.uniform(size=conf.size) < conf
    y = np.where(correct, 1, 0)
    probs = np.stack([1 - conf, conf], 1)
    assert expected_calibration_error(y, probs) < 0.02
    assert expected_calibration_error(np.zeros(100, int), onehotish(np.ones(100, int), conf=0.99)) == pytest.approx(0.99)


def test_mask_metrics_by_hand():
    roi = np.zeros((2, 4, 4), bool)
    roi[0, :2, :2] = True  # image 1 has no finding
    keep = np.zeros((2, 4, 4), bool)
    keep[0, :2, :] = True  # 8 kept, 4 of them on the finding
    m = mask_metrics(keep, roi)
    assert m["n_roi"] == 1 and m["mask_iou"] == 0.5 and m["mask_coverage"] == 1.0
    assert m["mask_area"] == pytest.approx((8 / 16 + 0) / 2)
    sal = np.zeros((2, 4, 4))
    sal[0, 3, 3] = 1
    assert mask_metrics(keep, roi, sal)["pointing"] == 0.0
    assert mask_metrics(np.zeros_like(keep), np.zeros_like(roi)) == {"mask_area": 0.0, "n_roi": 0}


def test_paired_tests_agree_with_scipy():
    a, b = [0.81, 0.79, 0.84, 0.80, 0.83], [0.78, 0.80, 0.79, 0.77, 0.79]
    r = paired_tests(a, b)
    assert r["t_p"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert r["wilcoxon_p"] == pytest.approx(sps.wilcoxon(a, b).pvalue)
    assert r["mean_diff"] == pytest.approx(np.mean(np.subtract(a, b)))
    same = paired_tests([0.5, 0.6], [0.5, 0.6])
    assert math.isnan(same["wilcoxon_p"]) and math.isnan(same["t_p"])
    assert math.isnan(paired_tests([0.5], [0.4])["t_p"])


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.2, float("nan"), 0.01])
    assert out[0] == pytest.approx(0.2) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_mean_std_and_bootstrap():
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)), 2)
    assert mean_std([4.0]) == (4.0, 0.0, 1)
    lo, hi = bootstrap_ci(np.arange(100.0), seed=1)
    assert lo < 49.5 < hi and hi - lo < 20


def test_saliency_auroc_ranks_finding_pixels():
    roi = np.zeros((2, 4, 4), bool)
    roi[:, 0, 0] = True
    sal = np.random.default_rng(0).uniform(0, 0.5, (2, 4, 4))
    sal[:, 0, 0] = 0.9
    m = mask_metrics(sal > 0.5, roi, sal)
    assert m["saliency_auroc"] == 1.0 and m["pointing"] == 1.0
    assert mask_metrics(sal > 0.5, roi, -sal)["saliency_auroc"] == 0.0
