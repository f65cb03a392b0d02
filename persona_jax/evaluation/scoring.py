"""The three consistency metrics of scored dialogues, per dialogue and speaker.

Metrics (each a :class:`~persona_jax.metrics.consistency.MetricResult`, unreadable verdicts
left out and counted):

- ``prompt_to_line``: fraction of the speaker's lines the judge finds consistent with the
  persona (the paper's definition);
- ``line_to_line``: fraction of the speaker's lines that have an earlier line of their own
  and conflict with none of them. Both judges give it, so it compares judges;
- ``line_to_line_paper``: the paper's ``1 - conflicts / earlier lines`` summed over the
  speaker's lines. Only a judge that names the conflicting lines (the LLM judge) gives it;
- ``qa``: fraction of Q&A probes answered in character (from the dialogue's own Q&A
  outcomes: the rollout's for generated dialogues, stored grades for released ones).

Per-turn series (``turns``) hold, per metric, the speaker's k-th line's outcome (1, 0 or None)
so that consistency can be plotted against the turn index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from persona_jax.evaluation.dialogues import EvalDialogue
from persona_jax.evaluation.judging import LineJudge, Verdict
from persona_jax.evaluation.lines import LineContext
from persona_jax.metrics.consistency import (
    LineConflicts,
    MetricResult,
    line_to_line,
    prompt_to_line,
    qa_accuracy,
)

METRICS: tuple[str, ...] = ("prompt_to_line", "line_to_line", "line_to_line_paper", "qa")
TURN_METRICS: tuple[str, ...] = ("prompt_to_line", "line_to_line", "qa")


@dataclass
class SpeakerScores:
    """One speaker of one dialogue: metrics, per-turn outcomes and the line verdicts."""

    dialogue_id: str
    source: str
    task: str
    role: str
    speaker: int
    metrics: dict[str, MetricResult]
    turns: dict[str, list[float | None]]
    verdicts: list[Verdict] = field(default_factory=list)


def _ok(flag: bool | None) -> bool | None:
    return None if flag is None else not flag


def speaker_scores(
    dialogue: EvalDialogue,
    speaker: int,
    contexts: Sequence[LineContext],
    verdicts: Sequence[Verdict],
) -> SpeakerScores:
    """Metrics of one speaker from the verdicts on its lines (in line order).

    Every line was asked both questions (line-to-line only where an earlier own line
    exists), so a None verdict is an unreadable output and is counted as such.
    """
    p2l = [_ok(v.inconsistent) for v in verdicts]
    judged = [c.n_earlier_own > 0 for c in contexts]
    l2l = [_ok(v.conflict) if j else None for v, j in zip(verdicts, judged, strict=True)]
    metrics = {
        "prompt_to_line": prompt_to_line([v.inconsistent for v in verdicts]),
        "line_to_line": qa_accuracy([x for x, j in zip(l2l, judged, strict=True) if j]),
        "qa": qa_accuracy(dialogue.qa.get(speaker, ())),
    }
    if any(v.n_conflicts is not None for v in verdicts):
        metrics["line_to_line_paper"] = line_to_line(
            [
                LineConflicts(c.n_earlier_own, v.n_conflicts)
                for c, v in zip(contexts, verdicts, strict=True)
            ]
        )
    as_float = lambda xs: [None if x is None else float(x) for x in xs]
    return SpeakerScores(
        dialogue_id=dialogue.dialogue_id,
        source=dialogue.source,
        task=dialogue.task,
        role=dialogue.roles[speaker],
        speaker=speaker,
        metrics=metrics,
        turns={
            "prompt_to_line": as_float(p2l),
            "line_to_line": as_float(l2l),
            "qa": as_float(dialogue.qa.get(speaker, ())),
        },
        verdicts=list(verdicts),
    )


def score_dialogues(
    dialogues: Sequence[EvalDialogue],
    judge: LineJudge,
    *,
    chunk_size: int = 64,
    progress: bool = True,
) -> list[SpeakerScores]:
    """Judge every line of every scored speaker, ``chunk_size`` lines per judge call."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    units = [(d, s, d.contexts(s)) for d in dialogues for s in d.scored_speakers]
    flat = [c for _, _, cs in units for c in cs]
    verdicts: list[Verdict] = []
    from tqdm import tqdm

    with tqdm(
        total=len(flat), desc=f"{judge.name} judge", unit="line", disable=not progress
    ) as bar:
        for start in range(0, len(flat), chunk_size):
            chunk = flat[start : start + chunk_size]
            verdicts.extend(judge.judge(chunk, [True] * len(chunk), [True] * len(chunk)))
            bar.update(len(chunk))
    out, at = [], 0
    for d, s, cs in units:
        out.append(speaker_scores(d, s, cs, verdicts[at : at + len(cs)]))
        at += len(cs)
    return out
