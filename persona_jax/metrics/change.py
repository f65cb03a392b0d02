"""Before/after changes of per-line scores, with persona-bootstrap intervals.

A training run is judged by how a per-line score (a judge's P(inconsistent), or the 0/1
verdict) moves between the evaluation before training and the one after, on the same
held-out personas. The lines of one persona are not independent and a held-out split has few
personas (10 patients in the default run), so the interval resamples whole personas, the same
draw for the before and the after evaluation (paired: a persona that reads as inconsistent
before tends to do so after). A *contrast* compares two scores' relative changes on the same
draws, e.g. the judge with the line's own persona against the same lines under a swapped
persona: a fall that the swapped persona shares is not a gain in fidelity to the own one.

Both the relative change (after / before - 1) and the difference (after - before) are
given. The relative interval exists only when every draw has a positive before mean: for a
rare 0/1 verdict (1 inconsistent line of 90) many draws leave out the one persona that had
it, and the draws that remain would all say -100%, an interval that looks certain and is not.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Change:
    """A score's means before and after, the relative change after / before - 1 and the
    difference after - before, each with its percentile interval (NaN where undefined).

    For a contrast of scores a and b, ``before`` and ``after`` hold a's and b's relative
    changes, ``relative`` their difference, and ``difference`` the difference of their
    differences.
    """

    before: float
    after: float
    relative: float
    low: float
    high: float
    difference: float
    difference_low: float
    difference_high: float
    level: float
    personas: int
    lines_before: int
    lines_after: int

    def to_dict(self) -> dict[str, Any]:
        clean = lambda x: None if math.isnan(x) else round(x, 4)
        return {
            "before": clean(self.before),
            "after": clean(self.after),
            "relative": clean(self.relative),
            "ci": [clean(self.low), clean(self.high)],
            "difference": clean(self.difference),
            "difference_ci": [clean(self.difference_low), clean(self.difference_high)],
            "level": self.level,
            "personas": self.personas,
            "lines": [self.lines_before, self.lines_after],
        }


def _group_totals(
    values: np.ndarray, groups: np.ndarray, labels: np.ndarray, where: str
) -> tuple[np.ndarray, np.ndarray]:
    values, groups = np.asarray(values, np.float64).ravel(), np.asarray(groups).ravel()
    if values.shape != groups.shape:
        raise ValueError(f"{where}: {values.size} values but {groups.size} persona labels")
    if np.isnan(values).any():
        raise ValueError(f"{where}: NaN scores")
    index = np.searchsorted(labels, groups)
    sums = np.bincount(index, weights=values, minlength=labels.size)
    counts = np.bincount(index, minlength=labels.size).astype(np.float64)
    return sums, counts


def _relative(after: np.ndarray, before: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(before > 0, after / np.where(before > 0, before, 1.0) - 1.0, np.nan)


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval; NaN when any draw is undefined (see the module docs)."""
    if not np.isfinite(draws).all():
        return math.nan, math.nan
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def before_after_changes(
    before: Mapping[str, np.ndarray],
    after: Mapping[str, np.ndarray],
    personas_before: Sequence[str] | np.ndarray,
    personas_after: Sequence[str] | np.ndarray,
    *,
    contrasts: Mapping[str, tuple[str, str]] | None = None,
    level: float = 0.95,
    samples: int = 2000,
    seed: int = 0,
) -> dict[str, Change]:
    """The change of every score in both mappings, and of each contrast.

    ``before[k]`` and ``after[k]`` hold one value per line; ``personas_*`` the persona of each
    line (the two evaluations must cover the same personas, in any order and with any number
    of lines each). ``contrasts[name] = (a, b)`` adds the change of ``a`` minus that of ``b``.
    Each bootstrap draw picks personas with replacement and weights every score's lines by
    how often their persona was drawn.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    g_b, g_a = np.asarray(personas_before).ravel(), np.asarray(personas_after).ravel()
    labels = np.unique(g_b)
    if not np.array_equal(labels, np.unique(g_a)):
        only = sorted(set(g_b.tolist()) ^ set(g_a.tolist()))[:5]
        raise ValueError(f"before and after cover different personas (e.g. {only})")
    if labels.size == 0:
        raise ValueError("no lines to compare")
    keys = [k for k in before if k in after]
    contrasts = dict(contrasts or {})
    for name, (a, b) in contrasts.items():
        if a not in keys or b not in keys:
            raise ValueError(f"contrast {name!r} names a score not in both evaluations: {a}, {b}")
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(labels.size, np.full(labels.size, 1.0 / labels.size), size=samples)
    rel_draws: dict[str, np.ndarray] = {}
    diff_draws: dict[str, np.ndarray] = {}
    out: dict[str, Change] = {}
    for k in keys:
        s_b, n_b = _group_totals(before[k], g_b, labels, f"before[{k!r}]")
        s_a, n_a = _group_totals(after[k], g_a, labels, f"after[{k!r}]")
        mean_b, mean_a = s_b.sum() / n_b.sum(), s_a.sum() / n_a.sum()
        draw_b, draw_a = (weights @ s_b) / (weights @ n_b), (weights @ s_a) / (weights @ n_a)
        rel_draws[k], diff_draws[k] = _relative(draw_a, draw_b), draw_a - draw_b
        out[k] = Change(
            float(mean_b), float(mean_a), float(_relative(np.asarray(mean_a), np.asarray(mean_b))),
            *_interval(rel_draws[k], level), float(mean_a - mean_b),
            *_interval(diff_draws[k], level), level, labels.size, int(n_b.sum()), int(n_a.sum()),
        )  # fmt: skip
    for name, (a, b) in contrasts.items():
        ca, cb = out[a], out[b]
        out[name] = Change(
            ca.relative, cb.relative, ca.relative - cb.relative,
            *_interval(rel_draws[a] - rel_draws[b], level), ca.difference - cb.difference,
            *_interval(diff_draws[a] - diff_draws[b], level), level, labels.size,
            ca.lines_before, ca.lines_after,
        )  # fmt: skip
    return out
