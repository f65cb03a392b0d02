"""Agreement metrics against values computed by hand."""

import math

import numpy as np
import pytest

from persona_jax.metrics.agreement import (
    accuracy,
    best_threshold,
    bootstrap_ci,
    cohen_kappa,
    confusion,
    f1_inconsistent,
    summary,
)

# 10 items: tp=3, fp=1, fn=2, tn=4.
TRUTH = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
PRED = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]


def test_hand_computed_values():
    assert confusion(TRUTH, PRED) == {"tp": 3, "fp": 1, "fn": 2, "tn": 4}
    assert accuracy(TRUTH, PRED) == pytest.approx(0.7)
    # F1 = 2*3 / (2*3 + 1 + 2) = 6/9
    assert f1_inconsistent(TRUTH, PRED) == pytest.approx(2 / 3)
    # p_o = 0.7; p_truth = 0.5, p_pred = 0.4 -> p_e = 0.5*0.4 + 0.5*0.6 = 0.5; kappa = 0.4
    assert cohen_kappa(TRUTH, PRED) == pytest.approx(0.4)


def test_unbalanced_hand_example():
    # 20 items, 4 positives; the rater finds 2 of them and adds 1 false alarm.
    truth = [1] * 4 + [0] * 16
    pred = [1, 1, 0, 0, 1] + [0] * 15
    # p_o = 17/20 = 0.85; p_e = 0.2*0.15 + 0.8*0.85 = 0.71; kappa = 0.14/0.29
    assert cohen_kappa(truth, pred) == pytest.approx(0.14 / 0.29)
    assert f1_inconsistent(truth, pred) == pytest.approx(4 / 7)


def test_edge_cases():
    assert cohen_kappa([1, 0, 1], [1, 0, 1]) == pytest.approx(1.0)
    assert cohen_kappa([1, 0], [0, 1]) == pytest.approx(-1.0)
    assert cohen_kappa([1, 0, 1, 0], [0, 0, 0, 0]) == pytest.approx(0.0)  # constant rater
    assert math.isnan(cohen_kappa([0, 0], [0, 0]))  # both constant and equal: undefined
    assert math.isnan(cohen_kappa([], []))
    assert f1_inconsistent([0, 0], [0, 0]) == 0.0
    with pytest.raises(ValueError, match="only 0 and 1"):
        cohen_kappa([0, 2], [0, 1])
    with pytest.raises(ValueError, match="one length"):
        accuracy([0, 1], [0])


def test_summary_and_threshold():
    s = summary(TRUTH, PRED)
    assert s["n"] == 10 and s["base_rate"] == 0.5 and s["pred_rate"] == pytest.approx(0.4)
    prob = np.asarray([0.9, 0.8, 0.7, 0.6, 0.55, 0.3, 0.2, 0.1, 0.05, 0.01])
    th, k = best_threshold(TRUTH, prob)
    assert k == pytest.approx(1.0) and 0.3 < th <= 0.55


def test_bootstrap_ci_brackets_the_estimate_and_widens_with_fewer_groups():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.8, truth, 1 - truth)
    k = cohen_kappa(truth, pred)
    lo, hi = bootstrap_ci(truth, pred, n_boot=300)
    assert lo < k < hi and hi - lo < 0.25
    few = np.repeat(np.arange(8), 50).astype(str)  # 8 groups of 50 lines
    glo, ghi = bootstrap_ci(truth, pred, few, n_boot=300)
    assert glo <= k <= ghi
    assert math.isnan(bootstrap_ci([], [], n_boot=10)[0])
