"""Training curves of a run, drawn from its ``metrics.jsonl``.

    python -m persona_jax.train.curves RUN_DIR [RUN_DIR ...] [--out curves.png]

One PNG per run (by default ``RUN_DIR/curves.png``; the trainer writes it at the end of every
run): the reward components per step with a moving average, the episode KL against the run's
budget with the KL coefficient, the held-out evaluations (before, in training, after) with
the persona-swap control beside each judge, and the time split of a step. A line-by-line
table hides what the picture shows at once: whether the reward rose, whether the KL stayed
within budget, and whether a fall of P(inconsistent) is matched by the swapped persona's.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from persona_jax.evaluation.report import headless_pyplot
from persona_jax.train.logging import METRICS_FILE

REWARD_KEYS = ("reward/total", "reward/prompt_to_line", "reward/line_to_line", "reward/qa")
# (evaluation metric, its persona-swap control): one colour per judge.
EVAL_PAIRS = (
    ("p_inconsistent", "swap_p_inconsistent", "evaluation judge P"),
    ("reward_judge_p_inconsistent", "reward_judge_swap_p_inconsistent", "reward judge P"),
)
TIME_KEYS = ("time/rollout_s", "time/reward_s", "time/update_s")


def read_metrics(path: str | Path) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """(training rows, evaluation rows) of a ``metrics.jsonl``, each sorted by step.

    A resumed run appends to the same file and repeats the steps after its checkpoint; the
    last row written for a step wins, as it is the one the surviving run took. Evaluation rows
    (keys ``eval/...``, stored without the prefix here) are kept apart from training rows.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics file (is this a train.py workdir?)")
    train: dict[int, dict[str, float]] = {}
    evals: dict[int, dict[str, float]] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            step = int(row.pop("step"))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{number}: not a metrics row ({err})") from None
        if any(k.startswith("eval/") for k in row):
            evals[step] = {k.removeprefix("eval/"): v for k, v in row.items()}
        else:
            train[step] = row
    return (
        [{"step": s, **train[s]} for s in sorted(train)],
        [{"step": s, **evals[s]} for s in sorted(evals)],
    )


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (shorter at the start, never shifted)."""
    x = np.asarray(values, np.float64)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    c = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def _series(rows: list[dict[str, float]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(r["step"], r[key]) for r in rows if key in r]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _legend(ax: Any, **kwargs: Any) -> None:
    """A legend where the panel has labelled lines, else a note that it has none."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, **kwargs)
    else:
        ax.text(0.5, 0.5, "nothing logged", ha="center", va="center", transform=ax.transAxes)


def _kl_budget(run_dir: Path) -> float | None:
    try:
        cfg = json.loads((run_dir / "config.json").read_text())
        return float(cfg["rl"]["kl_budget"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def plot_run(run_dir: str | Path, out: str | Path | None = None, window: int = 5) -> Path:
    """Draw the run's curves into one PNG; returns its path."""
    plt = headless_pyplot()
    run_dir = Path(run_dir)
    train, evals = read_metrics(run_dir / METRICS_FILE)
    out = Path(out) if out else run_dir / "curves.png"
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax_r, ax_kl, ax_e, ax_t = axes.ravel()

    for key in REWARD_KEYS:
        x, y = _series(train, key)
        if x:
            (line,) = ax_r.plot(x, y, alpha=0.25)
            ax_r.plot(x, moving_average(y, window), color=line.get_color(), label=key[7:])
    ax_r.set_title(f"reward per step (lines: mean of the last {window})")
    ax_r.set_xlabel("step")
    _legend(ax_r)

    x, y = _series(train, "kl")
    if x:
        ax_kl.plot(x, y, color="tab:red", label="episode KL")
    budget = _kl_budget(run_dir)
    if budget is not None:
        ax_kl.axhline(budget, color="tab:red", linestyle="--", label=f"budget {budget:g}")
    ax_kl.set_xlabel("step")
    ax_kl.set_ylabel("KL to the reference")
    handles = ax_kl.get_legend_handles_labels()
    x, y = _series(train, "kl_coef")
    if x:
        twin = ax_kl.twinx()
        twin.plot(x, y, color="tab:gray", label="KL coefficient (right)")
        twin.set_ylabel("KL coefficient")
        more = twin.get_legend_handles_labels()
        handles = (handles[0] + more[0], handles[1] + more[1])
    if handles[0]:
        ax_kl.legend(*handles, loc="lower right", fontsize=8)
    ax_kl.set_title("KL to the reference")

    for (own, swap, label), colour in zip(EVAL_PAIRS, ("tab:blue", "tab:orange"), strict=True):
        x, y = _series(evals, own)
        if x:
            ax_e.plot(x, y, marker="o", color=colour, label=f"{label}, own persona")
        x, y = _series(evals, swap)
        if x:
            ax_e.plot(x, y, marker="x", linestyle="--", color=colour, label=f"{label}, swapped")
    ax_e.set_title("held-out evaluation: mean P(inconsistent)")
    ax_e.set_xlabel("step")
    _legend(ax_e)

    timed = [r for r in train if all(k in r for k in TIME_KEYS)]
    if timed:
        steps, bottom = [r["step"] for r in timed], np.zeros(len(timed))
        for key in TIME_KEYS:
            y = np.array([r[key] for r in timed])
            ax_t.bar(steps, y, bottom=bottom, width=1.0, label=key[5:-2])
            bottom += y
    ax_t.set_title("wall time per step (s)")
    ax_t.set_xlabel("step")
    _legend(ax_t)

    fig.suptitle(str(run_dir))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m persona_jax.train.curves")
    parser.add_argument("runs", nargs="+", help="train.py workdirs (holding metrics.jsonl)")
    parser.add_argument("--out", default=None, help="output PNG (one run only)")
    parser.add_argument("--window", type=int, default=5, help="moving-average window (steps)")
    args = parser.parse_args(argv)
    if args.out and len(args.runs) > 1:
        parser.error("--out takes one run; without it each run gets RUN_DIR/curves.png")
    summary: list[dict[str, Any]] = []
    for run in args.runs:
        path = plot_run(run, args.out, args.window)
        print(f"wrote {path}")
        summary.append({"run": str(run), "png": str(path)})
    print(json.dumps({"curves": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
