"""Before/after changes with persona-bootstrap intervals, and their files on disk."""

from pathlib import Path

import numpy as np
import pytest

from persona_jax.metrics.change import before_after_changes
from persona_jax.train.changes import (
    change_table,
    changes_between,
    eval_lines_path,
    load_eval_lines,
    save_eval_lines,
)


def _lines(rng, personas: list[str], per_persona: int, scale: dict[str, float] | None = None):
    groups = np.repeat(personas, per_persona)
    base = rng.uniform(0.05, 0.4, groups.size)
    if scale:
        base = base * np.asarray([scale[g] for g in groups])
    return base, groups


def _loop_reference(b, gb, a, ga, seed, samples, level):
    """The persona bootstrap written out: draw personas, concatenate their lines, take means."""
    labels = np.unique(gb)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(labels.size, np.full(labels.size, 1 / labels.size), size=samples)
    rel, diff = [], []
    for w in weights:
        pick = np.repeat(labels, w)
        mb = np.concatenate([b[gb == g] for g in pick]).mean()
        ma = np.concatenate([a[ga == g] for g in pick]).mean()
        rel.append(ma / mb - 1)
        diff.append(ma - mb)
    q = [(1 - level) / 2, (1 + level) / 2]
    return np.quantile(rel, q), np.quantile(diff, q)


def test_interval_matches_a_loop_over_drawn_personas() -> None:
    rng = np.random.default_rng(3)
    personas = [f"p{k}" for k in range(7)]
    b, gb = _lines(rng, personas, 9)
    a, ga = _lines(rng, personas[::-1], 6)  # other lines, other order, other counts
    got = before_after_changes({"p": b}, {"p": a}, gb, ga, samples=300, seed=5, level=0.9)["p"]
    (lo, hi), (d_lo, d_hi) = _loop_reference(b, gb, a, ga, seed=5, samples=300, level=0.9)
    assert got.low == pytest.approx(lo, rel=1e-9) and got.high == pytest.approx(hi, rel=1e-9)
    assert got.difference_low == pytest.approx(d_lo, rel=1e-9)
    assert got.difference_high == pytest.approx(d_hi, rel=1e-9)
    assert got.difference == pytest.approx(a.mean() - b.mean())
    assert got.relative == pytest.approx(a.mean() / b.mean() - 1)
    assert (got.before, got.after) == (pytest.approx(b.mean()), pytest.approx(a.mean()))
    assert (got.personas, got.lines_before, got.lines_after) == (7, 63, 42)


def test_a_uniform_fall_has_a_zero_width_interval_and_persona_noise_widens_it() -> None:
    rng = np.random.default_rng(0)
    personas = [f"p{k}" for k in range(10)]
    b, g = _lines(rng, personas, 9)
    exact = before_after_changes({"p": b}, {"p": 0.7 * b}, g, g)["p"]
    assert exact.relative == pytest.approx(-0.3)
    assert exact.low == pytest.approx(-0.3) and exact.high == pytest.approx(-0.3)
    # The same mean fall, but uneven across personas: the interval must open around it.
    factor = {p: f for p, f in zip(personas, np.linspace(0.2, 1.2, 10), strict=True)}
    a = b * np.asarray([factor[x] for x in g])
    uneven = before_after_changes({"p": b}, {"p": a}, g, g)["p"]
    assert uneven.low < uneven.relative < uneven.high
    assert uneven.high - uneven.low > 0.1


def test_contrast_separates_a_persona_specific_fall_from_a_shared_one() -> None:
    rng = np.random.default_rng(1)
    personas = [f"p{k}" for k in range(10)]
    own, g = _lines(rng, personas, 9)
    swap = own + 0.05
    contrasts = {"own_minus_swap": ("own", "swap")}
    shared = before_after_changes(
        {"own": own, "swap": swap}, {"own": 0.6 * own, "swap": 0.6 * swap}, g, g,
        contrasts=contrasts,
    )["own_minus_swap"]  # fmt: skip
    assert shared.relative == pytest.approx(0.0, abs=1e-12)
    assert shared.low == pytest.approx(0.0, abs=1e-9) and shared.high == pytest.approx(0, abs=1e-9)
    specific = before_after_changes(
        {"own": own, "swap": swap}, {"own": 0.6 * own, "swap": swap}, g, g, contrasts=contrasts
    )["own_minus_swap"]
    assert (specific.before, specific.after) == (pytest.approx(-0.4), pytest.approx(0.0))
    assert specific.relative == pytest.approx(-0.4)
    assert specific.high < 0


def test_zero_before_has_no_relative_change_but_a_difference() -> None:
    g = np.asarray(["a", "a", "b", "b"])
    c = before_after_changes({"x": np.zeros(4)}, {"x": np.asarray([0, 1, 0, 0.0])}, g, g)["x"]
    assert np.isnan(c.relative) and np.isnan(c.low)
    d = c.to_dict()
    assert d["relative"] is None and d["ci"] == [None, None] and d["after"] == 0.25
    assert d["difference"] == 0.25 and d["difference_ci"][1] == 0.5


def test_a_rare_verdict_gets_no_relative_interval() -> None:
    # One inconsistent line of 90 before (persona p3), none after: many draws leave p3 out,
    # and the rest would all say -100%.
    personas = [f"p{k}" for k in range(10)]
    g = np.repeat(personas, 9)
    before = np.zeros(90)
    before[30] = 1.0
    c = before_after_changes({"x": before}, {"x": np.zeros(90)}, g, g)["x"]
    assert c.relative == -1.0
    assert np.isnan(c.low) and np.isnan(c.high)
    assert c.difference == pytest.approx(-1 / 90)
    assert c.difference_low < c.difference < c.difference_high == 0.0


def test_bad_inputs_are_named() -> None:
    g = np.asarray(["a", "b"])
    with pytest.raises(ValueError, match="different personas"):
        before_after_changes({"x": np.ones(2)}, {"x": np.ones(2)}, g, np.asarray(["a", "c"]))
    g3 = np.asarray(["a", "b", "b"])
    with pytest.raises(ValueError, match=r"before\['x'\]: 2 values but 3 persona labels"):
        before_after_changes({"x": np.ones(2)}, {"x": np.ones(3)}, g3, g3)
    with pytest.raises(ValueError, match="NaN"):
        before_after_changes({"x": np.asarray([1.0, np.nan])}, {"x": np.ones(2)}, g, g)
    with pytest.raises(ValueError, match="contrast"):
        ones = {"x": np.ones(2)}
        before_after_changes(ones, ones, g, g, contrasts={"c": ("x", "y")})


def test_saved_evaluations_round_trip_and_give_the_changes(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    ids = ["p0", "p0", "p1", "p1", "p2", "p2"]
    p = rng.uniform(0.1, 0.3, (3, 6))
    before = {"p_inconsistent": p, "swap_p_inconsistent": p + 0.02, "inconsistent": p > 0.25}
    after = {"p_inconsistent": 0.5 * p, "swap_p_inconsistent": p + 0.02, "inconsistent": p > 0.9}
    b_path, a_path = eval_lines_path(tmp_path, "before", 0), eval_lines_path(tmp_path, "after", 7)
    assert a_path == tmp_path / "evals" / "after_step000007.npz"
    save_eval_lines(b_path, before, ids)
    save_eval_lines(a_path, after, ids)
    arrays, personas = load_eval_lines(b_path)
    assert personas.tolist() == ids and set(arrays) == set(before)
    np.testing.assert_array_equal(arrays["p_inconsistent"], p)

    changes = changes_between(b_path, a_path)
    assert changes["p_inconsistent"].relative == pytest.approx(-0.5)
    assert changes["swap_p_inconsistent"].relative == pytest.approx(0.0)
    # Only the evaluation judge's contrast: the reward judge's scores were not saved.
    contrast = changes["p_inconsistent_minus_swap"]
    assert contrast.relative == pytest.approx(-0.5) and contrast.personas == 3
    assert "reward_judge_p_inconsistent_minus_swap" not in changes
    table = change_table({k: c.to_dict() for k, c in changes.items()})
    assert "| p_inconsistent |" in table and "-50.0%" in table
    assert "| p_inconsistent minus swap_p_inconsistent | -50.0% | +0.0% | -50.0%" in table
    assert "95% intervals from resampling the 3 held-out personas" in table

    with pytest.raises(ValueError, match=r"expected \[turns, 6 dialogues\]"):
        save_eval_lines(tmp_path / "bad.npz", {"x": np.ones((3, 5))}, ids)
    with pytest.raises(FileNotFoundError, match="no saved evaluation"):
        load_eval_lines(tmp_path / "missing.npz")
