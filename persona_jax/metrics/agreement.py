"""Agreement between two binary raters (a distilled judge against the 70B judge's verdicts).

Pure numpy functions of 0/1 arrays, label 1 = inconsistent. Cohen's kappa is the headline
number because the classes are unbalanced (a judge that always says "consistent" gets high
accuracy on chatting lines and kappa 0); F1 is that of the inconsistent class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

ArrayLike = Sequence[int] | np.ndarray


def _pair(truth: ArrayLike, pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(truth), np.asarray(pred)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"need two 1-d arrays of one length, got {t.shape} and {p.shape}")
    for name, a in (("truth", t), ("pred", p)):
        if a.size and not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must hold only 0 and 1")
    return t.astype(bool), p.astype(bool)


def confusion(truth: ArrayLike, pred: ArrayLike) -> dict[str, int]:
    """Counts tp/fp/fn/tn with label 1 (inconsistent) as the positive class."""
    t, p = _pair(truth, pred)
    return {
        "tp": int(np.sum(t & p)),
        "fp": int(np.sum(~t & p)),
        "fn": int(np.sum(t & ~p)),
        "tn": int(np.sum(~t & ~p)),
    }


def accuracy(truth: ArrayLike, pred: ArrayLike) -> float:
    t, p = _pair(truth, pred)
    return float(np.mean(t == p)) if t.size else math.nan


def f1_inconsistent(truth: ArrayLike, pred: ArrayLike) -> float:
    """F1 of class 1; 0 when there is no true or predicted positive to score (and NaN if empty)."""
    c = confusion(truth, pred)
    if not sum(c.values()):
        return math.nan
    denom = 2 * c["tp"] + c["fp"] + c["fn"]
    return 2 * c["tp"] / denom if denom else 0.0


def cohen_kappa(truth: ArrayLike, pred: ArrayLike) -> float:
    """(p_o - p_e) / (1 - p_e); NaN when undefined (empty, or both raters constant and equal)."""
    t, p = _pair(truth, pred)
    if not t.size:
        return math.nan
    po = float(np.mean(t == p))
    pt, pp = float(np.mean(t)), float(np.mean(p))
    pe = pt * pp + (1 - pt) * (1 - pp)
    if pe >= 1.0:
        return math.nan
    return (po - pe) / (1 - pe)


def summary(truth: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """kappa, accuracy, F1 (inconsistent), n and both raters' inconsistent rates."""
    t, p = _pair(truth, pred)
    return {
        "n": int(t.size),
        "kappa": cohen_kappa(t.astype(int), p.astype(int)),
        "accuracy": accuracy(t.astype(int), p.astype(int)),
        "f1": f1_inconsistent(t.astype(int), p.astype(int)),
        "base_rate": float(np.mean(t)) if t.size else math.nan,
        "pred_rate": float(np.mean(p)) if t.size else math.nan,
    }


def within_group_kappa(groups: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The n-weighted mean of per-group kappas (e.g. per task), over groups where it is defined.

    A kappa pooled over tasks with very different base rates (therapy lines are mostly judged
    inconsistent, chat lines mostly not) credits a rater that only knows the task; averaging the
    within-task kappas removes that credit. ``groups`` maps a name to a :func:`summary` dict.
    """
    used = {k: g for k, g in groups.items() if g["n"] and not math.isnan(g["kappa"])}
    n = sum(g["n"] for g in used.values())
    kappa = sum(g["kappa"] * g["n"] for g in used.values()) / n if n else math.nan
    return {
        "kappa": kappa,
        "n": n,
        "groups": sorted(used),
        "undefined": sorted(set(groups) - set(used)),
    }


def best_threshold(truth: ArrayLike, prob: np.ndarray, grid: np.ndarray | None = None):
    """The threshold on P(inconsistent) that maximises kappa, and that kappa.

    Meant for validation data only; ties go to the threshold nearest 0.5.
    """
    t = np.asarray(truth)
    prob = np.asarray(prob, np.float64)
    grid = np.linspace(0.02, 0.98, 97) if grid is None else np.asarray(grid)
    best = (-math.inf, 0.5)
    for th in sorted(grid, key=lambda x: abs(x - 0.5)):
        k = cohen_kappa(t, (prob >= th).astype(int))
        if not math.isnan(k) and k > best[0]:
            best = (k, float(th))
    return best[1], best[0]


def bootstrap_ci(
    truth: ArrayLike,
    pred: ArrayLike,
    groups: Sequence[str] | np.ndarray | None = None,
    *,
    metric=cohen_kappa,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `metric`, resampling whole groups when given.

    Lines of one persona are not independent, so held-out numbers are resampled by persona
    group: the interval then reflects how few personas a split holds.
    """
    t, p = np.asarray(truth), np.asarray(pred)
    rng = np.random.default_rng(seed)
    if groups is None:
        members = [np.asarray([i]) for i in range(len(t))]
    else:
        g = np.asarray(groups)
        members = [np.flatnonzero(g == u) for u in np.unique(g)]
    if not members:
        return math.nan, math.nan
    stats = []
    for _ in range(n_boot):
        pick = rng.integers(len(members), size=len(members))
        idx = np.concatenate([members[i] for i in pick])
        value = metric(t[idx], p[idx])
        if not math.isnan(value):
            stats.append(value)
    if not stats:
        return math.nan, math.nan
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
