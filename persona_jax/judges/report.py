"""Markdown tables of a distillation run's results (for the model card), from results.json.

Generated rather than copied by hand, so the card's numbers are the measured ones.

    python -m persona_jax.judges.report runs/judge/results.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from persona_jax.metrics.agreement import within_group_kappa

HEADS = ("prompt_to_line", "line_to_line")
ROWS = ("chatting", "education", "therapy", "all")


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def metrics_table(block: dict[str, Any]) -> str:
    """One row per task and head: n, base rate, kappa [95% CI], accuracy, F1; then per head the
    within-task kappa, which gives no credit for knowing a task's base rate."""
    lines = [
        "| task | head | n (personas) | 70B inconsistent | judge inconsistent | kappa [95% CI] "
        "| accuracy | F1 (inconsistent) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in ROWS:
        for head in HEADS:
            m = block.get(task, {}).get(head)
            if m is None:
                continue
            lo, hi = m.get("kappa_ci95", (math.nan, math.nan))
            n = f"{m['n']} ({m.get('personas', '?')})"
            lines.append(
                f"| {task} | {head} | {n} | {_f(m['base_rate'], 2)} "
                f"| {_f(m['pred_rate'], 2)} | {_f(m['kappa'])} [{_f(lo, 2)}, {_f(hi, 2)}] "
                f"| {_f(m['accuracy'])} | {_f(m['f1'])} |"
            )
    for head in HEADS:
        tasks = {t: block[t][head] for t in ROWS[:-1] if head in block.get(t, {})}
        if len(tasks) > 1:
            w = within_group_kappa(tasks)
            lines.append(
                f"| within task | {head} | {w['n']} | | | {_f(w['kappa'])} (n-weighted mean of "
                f"the task kappas) | | |"
            )
    return "\n".join(lines)


def sweep_table(sweep: list[dict[str, Any]]) -> str:
    """Validation-only comparison of every variant tried (mean ± std over seeds)."""
    lines = [
        "| variant | deployable | train rows | val kappa p2l: seeds | ensemble "
        "| val kappa l2l: seeds | ensemble |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sweep:
        a, b = s["val_kappa_p2l"], s["val_kappa_l2l"]
        lines.append(
            f"| {s['variant']} | {'yes' if s['deployable'] else 'no'} | {s['n_train']} "
            f"| {_f(a['mean'])} ± {_f(a['std'])} | {_f(a.get('ensemble'))} "
            f"| {_f(b['mean'])} ± {_f(b['std'])} | {_f(b.get('ensemble'))} |"
        )
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    out = [
        "## Validation sweep (best-threshold kappa: each seed's head, mean ± std, and their "
        "merged ensemble)",
        "",
    ]
    out += [sweep_table(results["sweep"]), ""]
    for key in ("shipped", "shipped_eval", "with_doubtful", "without_doubtful"):
        r = results.get(key)
        if not r:
            continue
        th = r["thresholds"]
        out += [
            f"## {key}: {r['variant']}, ensemble of {r.get('ensemble', 1)} "
            f"({r['train_rows']} train lines, {r.get('train_personas', '?')} personas in "
            f"{r['train_groups']} groups; thresholds p2l {th['prompt_to_line']:.2f}, "
            f"l2l {th['line_to_line']:.2f}; best epochs {r.get('best_epochs')})",
            "",
        ]
        for split in ("validation", "test", "test_with_doubtful"):
            if split in r:
                out += [f"### {split}", "", metrics_table(r[split]), ""]
    return "\n".join(out)


def main(argv: list[str]) -> None:
    path = Path(argv[1] if len(argv) > 1 else "runs/judge/results.json")
    print(render(json.loads(path.read_text())))


if __name__ == "__main__":
    main(sys.argv)
