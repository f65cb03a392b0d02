"""Per-line evaluation scores on disk, and a run's before/after changes with intervals.

Each held-out evaluation of a run writes its per-line scores to ``evals/<tag>_step<N>.npz``
beside the readable samples, so the change from the before-evaluation to any later one can
be computed (and recomputed with other settings) without playing the dialogues again, also
after a resumed run, whose before-evaluation happened in an earlier process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from persona_jax.metrics.change import Change, before_after_changes

PERSONAS_KEY = "persona_ids"
# Own persona against the same lines under a swapped persona: the part of a change that is
# fidelity to the own persona (see `persona_jax.train.evaluation`).
CONTRASTS = {
    "p_inconsistent_minus_swap": ("p_inconsistent", "swap_p_inconsistent"),
    "reward_judge_p_inconsistent_minus_swap": (
        "reward_judge_p_inconsistent",
        "reward_judge_swap_p_inconsistent",
    ),
}


def eval_lines_path(workdir: str | Path, tag: str, step: int) -> Path:
    """Where the evaluation ``tag`` (before, eval, after) of ``step`` keeps its scores."""
    return Path(workdir) / "evals" / f"{tag}_step{step:06d}.npz"


def save_eval_lines(path: str | Path, per_line: dict[str, np.ndarray], persona_ids: list[str]):
    """Write [turns, dialogues] score arrays and the dialogues' persona ids (atomically)."""
    if PERSONAS_KEY in per_line:
        raise ValueError(f"{PERSONAS_KEY!r} is reserved for the persona ids")
    for key, value in per_line.items():
        if np.ndim(value) != 2 or np.shape(value)[1] != len(persona_ids):
            raise ValueError(
                f"{key}: expected [turns, {len(persona_ids)} dialogues], got {np.shape(value)}"
            )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **{k: np.asarray(v) for k, v in per_line.items()},
             **{PERSONAS_KEY: np.asarray(persona_ids, dtype=str)})  # fmt: skip
    tmp.replace(path)


def load_eval_lines(path: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(score arrays, persona id per dialogue) of a saved evaluation."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved evaluation at {path}")
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    if PERSONAS_KEY not in arrays:
        raise ValueError(f"{path}: no {PERSONAS_KEY} array; not a saved evaluation")
    personas = arrays.pop(PERSONAS_KEY)
    return arrays, personas


def _flat(arrays: dict[str, np.ndarray], personas: np.ndarray):
    """Lines flattened, each with its dialogue's persona."""
    values = {k: v.reshape(-1) for k, v in arrays.items()}
    turns = next(iter(arrays.values())).shape[0] if arrays else 0
    return values, np.tile(personas, turns)


def changes_between(
    before_path: str | Path,
    after_path: str | Path,
    *,
    level: float = 0.95,
    samples: int = 2000,
    seed: int = 0,
) -> dict[str, Change]:
    """Every score's relative change from one saved evaluation to another, and the own
    minus swapped persona contrasts, with persona-bootstrap intervals."""
    before, after = load_eval_lines(before_path), load_eval_lines(after_path)
    (b_vals, b_groups), (a_vals, a_groups) = _flat(*before), _flat(*after)
    both = set(b_vals) & set(a_vals)
    contrasts = {name: pair for name, pair in CONTRASTS.items() if set(pair) <= both}
    return before_after_changes(
        b_vals, a_vals, b_groups, a_groups, contrasts=contrasts, level=level, samples=samples,
        seed=seed,
    )  # fmt: skip


def change_table(changes: dict[str, dict]) -> str:
    """Markdown of `Change.to_dict` rows: mean before and after, relative change and
    difference with their intervals; for a contrast, the two relative changes and the
    differences of both."""
    pct = lambda x: "-" if x is None else f"{100 * x:+.1f}%"
    num = lambda x: "-" if x is None else f"{x:.3f}"
    signed = lambda x: "-" if x is None else f"{x:+.3f}"
    rows = [
        "| score | before | after | relative change (interval) | difference (interval) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, c in changes.items():
        (low, high), (d_low, d_high) = c["ci"], c["difference_ci"]
        rel_ci = "no interval" if low is None else f"{pct(low)} to {pct(high)}"
        rel = f"{pct(c['relative'])} ({rel_ci})"
        diff = f"{signed(c['difference'])} ({signed(d_low)} to {signed(d_high)})"
        if name in CONTRASTS:
            a, b = CONTRASTS[name]
            label, before, after = f"{a} minus {b}", f"{pct(c['before'])}", f"{pct(c['after'])}"
        else:
            label, before, after = name, num(c["before"]), num(c["after"])
        rows.append(f"| {label} | {before} | {after} | {rel} | {diff} |")
    any_row = next(iter(changes.values()), None)
    if any_row is not None:
        rows.append(
            f"\n{round(100 * any_row['level'])}% intervals from resampling the "
            f"{any_row['personas']} held-out personas; a contrast row holds the two relative "
            "changes (own persona, swapped persona) and their difference."
        )
    return "\n".join(rows)
