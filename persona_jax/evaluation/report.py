"""Summaries of scored speakers: means with 95% confidence intervals, markdown and plots.

The unit of a mean is one speaker in one dialogue (its metric over its own lines, as in the
paper); lines of one dialogue are not independent, so resampling lines would overstate the
precision. Intervals are percentile bootstrap intervals over those units (default, fixed
seed, so a rerun prints the same numbers) or the normal approximation
``mean +- z * sd / sqrt(n)``; ``ci_method`` in the results says which. A group with one unit
has no interval.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from persona_jax.evaluation.scoring import METRICS, TURN_METRICS, SpeakerScores

CI_METHODS = ("bootstrap", "normal")
OVERALL = "all"


def confidence_interval(
    values: Sequence[float],
    *,
    method: str = "bootstrap",
    level: float = 0.95,
    samples: int = 2000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """A ``level`` interval for the mean of ``values``; None with fewer than two values."""
    if method not in CI_METHODS:
        raise ValueError(f"unknown ci method {method!r}; expected one of {CI_METHODS}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    x = np.asarray(values, np.float64)
    if x.size < 2:
        return None
    if method == "normal":
        from statistics import NormalDist

        z = NormalDist().inv_cdf(0.5 + level / 2)
        half = z * float(np.std(x, ddof=1)) / math.sqrt(x.size)
        return float(x.mean() - half), float(x.mean() + half)
    if samples < 1:
        raise ValueError(f"bootstrap samples must be >= 1, got {samples}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (samples, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def ci_description(method: str, level: float, samples: int) -> str:
    if method == "bootstrap":
        return (
            f"{round(100 * level)}% percentile bootstrap over dialogue-speaker units "
            f"({samples} resamples)"
        )
    return f"{round(100 * level)}% normal approximation (mean +- z * sd / sqrt(n))"


def _stat(values: Sequence[float], n_lines: int, n_unparsed: int, ci_kw: Mapping[str, Any]):
    ci = confidence_interval(values, **ci_kw)
    return {
        "mean": float(np.mean(values)) if values else None,
        "ci_low": None if ci is None else ci[0],
        "ci_high": None if ci is None else ci[1],
        "n": len(values),
        "n_lines_scored": n_lines,
        "n_unparsed": n_unparsed,
    }


def group_key(unit: SpeakerScores) -> str:
    return f"{unit.task}/{unit.role}"


def summarise(units: Sequence[SpeakerScores], **ci_kw: Any) -> dict[str, dict[str, Any]]:
    """Per ``task/role`` group and overall (``"all"``): per metric mean, CI, n units, lines."""
    groups: dict[str, list[SpeakerScores]] = {}
    for u in units:
        groups.setdefault(group_key(u), []).append(u)
    groups[OVERALL] = list(units)
    out: dict[str, dict[str, Any]] = {}
    for name, members in sorted(groups.items()):
        out[name] = {}
        for metric in METRICS:
            results = [u.metrics[metric] for u in members if metric in u.metrics]
            if not results:
                continue
            scores = [r.score for r in results if r.score is not None]
            out[name][metric] = _stat(
                scores,
                sum(r.n_scored for r in results),
                sum(r.n_unparsed for r in results),
                ci_kw,
            )
    return out


def per_turn(units: Sequence[SpeakerScores], **ci_kw: Any) -> dict[str, dict[str, list[dict]]]:
    """Per group and metric: mean outcome of the speakers' k-th line, for k = 0, 1, ..."""
    groups: dict[str, list[SpeakerScores]] = {}
    for u in units:
        groups.setdefault(group_key(u), []).append(u)
    out: dict[str, dict[str, list[dict]]] = {}
    for name, members in sorted(groups.items()):
        out[name] = {}
        for metric in TURN_METRICS:
            width = max((len(u.turns.get(metric, ())) for u in members), default=0)
            series = []
            for k in range(width):
                values = [
                    u.turns[metric][k]
                    for u in members
                    if k < len(u.turns.get(metric, ())) and u.turns[metric][k] is not None
                ]
                if values:
                    series.append({"turn": k, **_stat(values, len(values), 0, ci_kw)})
            if series:
                out[name][metric] = series
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _interval(stat: Mapping[str, Any]) -> str:
    if stat["ci_low"] is None:
        return "n/a"
    return f"[{_fmt(stat['ci_low'])}, {_fmt(stat['ci_high'])}]"


def markdown_metrics(results: Mapping[str, Any]) -> str:
    """results.md of a dialogue evaluation."""
    lines = [
        "# Consistency evaluation",
        "",
        f"- dialogues: {results['num_dialogues']} ({results['origin']})",
        f"- judge: {results['judge_name']} ({results['judge_summary']})",
        f"- intervals: {results['ci_method']}",
        f"- Q&A outcomes: {results.get('qa_source') or 'none'}",
        "",
        "| task/role | metric | mean | 95% CI | n (dialogue-speakers) | lines scored | unparsed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for group, metrics in results["summary"].items():
        for metric, s in metrics.items():
            lines.append(
                f"| {group} | {metric} | {_fmt(s['mean'])} | {_interval(s)} | {s['n']} | "
                f"{s['n_lines_scored']} | {s['n_unparsed']} |"
            )
    lines += ["", "Definitions:", ""]
    lines += [f"- `{k}`: {v}" for k, v in results["definitions"].items()]
    stats = results.get("judge_stats")
    if stats:
        lines += ["", "LLM judge requests and unreadable outputs:", ""]
        lines += [f"- {k}: {v}" for k, v in stats.items() if not k.endswith("samples")]
    if results.get("plots"):
        lines += ["", "Consistency by turn index:", ""]
        lines += [f"![{Path(p).stem}]({Path(p).name})" for p in results["plots"]]
    return "\n".join(lines) + "\n"


def markdown_agreement(results: Mapping[str, Any]) -> str:
    """results.md of a judge-agreement run."""
    lines = [
        "# Judge agreement with the stored verdicts",
        "",
        f"- judge: {results['judge_name']} ({results['judge_summary']})",
        f"- split: {results['split']}; lines: {results['n_lines']}",
        f"- excluded sources: {', '.join(results['excluded_sources']) or 'none'}",
        "",
        "| kind | task | n | kappa | accuracy | F1 (inconsistent) | stored rate | judge rate "
        "| unparsed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, per_task in results["agreement"].items():
        for task, s in per_task.items():
            lines.append(
                f"| {kind} | {task} | {s['n']} | {_fmt(s['kappa'])} | {_fmt(s['accuracy'])} | "
                f"{_fmt(s['f1'])} | {_fmt(s['base_rate'])} | {_fmt(s['pred_rate'])} | "
                f"{s['n_unparsed']} |"
            )
    within = results.get("within_task")
    if within:
        lines += [
            "",
            "Within-task kappa (per-task kappas weighted by n; no credit for knowing the "
            "task's base rate):",
            "",
        ]
        for kind, w in within.items():
            undefined = f"; undefined for {', '.join(w['undefined'])}" if w["undefined"] else ""
            lines.append(
                f"- {kind}: {_fmt(w['kappa'])} over {w['n']} lines of "
                f"{', '.join(w['groups']) or 'no task'}{undefined}"
            )
    swap = results.get("swap_control")
    if swap:
        lines += [
            "",
            "Persona-swap control (prompt-to-line lines judged again with another persona of "
            "their task):",
            "",
            "| task | n | stored rate | judge rate, real persona | judge rate, swapped persona |",
            "| --- | --- | --- | --- | --- |",
        ]
        for task, s in swap.items():
            lines.append(
                f"| {task} | {s['n']} | {_fmt(s['stored_rate'])} | {_fmt(s['real_rate'])} | "
                f"{_fmt(s['swapped_rate'])} |"
            )
    lines += ["", "Notes:", ""] + [f"- {n}" for n in results["notes"]]
    return "\n".join(lines) + "\n"


def headless_pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg back end: plots are written to files on machines
    without a display (CI, pod hosts), and matplotlib is imported only when a plot is drawn."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_turns(turns: Mapping[str, Mapping[str, list[dict]]], out_dir: str | Path) -> list[Path]:
    """One PNG per group: each metric's mean outcome against the turn index, with its CI."""
    plt = headless_pyplot()
    from matplotlib.ticker import MaxNLocator

    out_dir = Path(out_dir)
    paths = []
    for group, metrics in turns.items():
        if not metrics:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for metric, series in metrics.items():
            x = [p["turn"] for p in series]
            y = [p["mean"] for p in series]
            ax.plot(x, y, marker="o", label=metric)
            lo = [p["ci_low"] if p["ci_low"] is not None else p["mean"] for p in series]
            hi = [p["ci_high"] if p["ci_high"] is not None else p["mean"] for p in series]
            ax.fill_between(x, lo, hi, alpha=0.2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("turn index (the speaker's k-th line)")
        ax.set_ylabel("fraction consistent (qa: answered in character)")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"consistency by turn: {group}")
        ax.legend()
        fig.tight_layout()
        path = out_dir / f"turns_{group.replace('/', '_')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def flatten(units: Iterable[SpeakerScores]) -> list[dict[str, Any]]:
    """Per dialogue-speaker records for results.json."""
    return [
        {
            "dialogue_id": u.dialogue_id,
            "source": u.source,
            "task": u.task,
            "role": u.role,
            "speaker": u.speaker,
            **{
                m: {"score": r.score, "n_scored": r.n_scored, "n_unparsed": r.n_unparsed}
                for m, r in u.metrics.items()
            },
        }
        for u in units
    ]
