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
    within_group_kappa,
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


def test_within_task_kappa_gives_no_credit_for_task_base_rates():
    """A rater that says 'inconsistent' for every line of one task and 'consistent' for every
    line of the other agrees well pooled, but tells no lines apart within a task."""
    truth_a, pred_a = [1, 1, 1, 0], [1, 1, 1, 1]  # task a: mostly inconsistent, all flagged
    truth_b, pred_b = [0, 0, 0, 1], [0, 0, 0, 0]  # task b: mostly consistent, none flagged
    pooled = cohen_kappa(truth_a + truth_b, pred_a + pred_b)
    # p_o = 6/8; p_truth = 1/2, p_pred = 1/2 -> p_e = 1/2; kappa = 0.5.
    assert pooled == pytest.approx(0.5)
    groups = {
        "a": summary(truth_a, pred_a),
        "b": summary(truth_b, pred_b),
        "c": summary([0, 0], [0, 0]),  # undefined: left out, named
    }
    w = within_group_kappa(groups)
    assert w["kappa"] == pytest.approx(0.0) and w["n"] == 8
    assert w["groups"] == ["a", "b"] and w["undefined"] == ["c"]
    # Weighted by n: a group of 4 with kappa 0.4 and a group of 2 with kappa -1.
    w = within_group_kappa(
        {"x": {"n": 4, "kappa": 0.4}, "y": {"n": 2, "kappa": -1.0}, "z": {"n": 0, "kappa": 0.0}}
    )
    assert w["kappa"] == pytest.approx((4 * 0.4 - 2) / 6) and w["undefined"] == ["z"]
    assert math.isnan(within_group_kappa({})["kappa"])


def test_judge_report_table_has_the_within_task_row():
    from persona_jax.judges.report import metrics_table

    def block(kappa: float, n: int) -> dict:
        return {"n": n, "kappa": kappa, "accuracy": 0.9, "f1": 0.5, "base_rate": 0.2,
                "pred_rate": 0.2, "personas": 2}  # fmt: skip

    table = metrics_table(
        {
            "chatting": {"prompt_to_line": block(0.6, 300)},
            "therapy": {"prompt_to_line": block(0.0, 100)},
            "all": {"prompt_to_line": block(0.7, 400)},
        }
    )
    row = next(r for r in table.splitlines() if r.startswith("| within task"))
    assert "| prompt_to_line | 400 |" in row and "0.450" in row  # (0.6 x 300 + 0) / 400
    assert "line_to_line" not in table
