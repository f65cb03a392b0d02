"""The paper's three consistency metrics, as pure functions over parsed verdicts.

- prompt-to-line: per speaker per dialogue, the fraction of that speaker's judged lines
  that the judge found consistent with the persona;
- line-to-line: ``1 - conflicts / earlier lines``, both summed over the speaker's judged
  lines in the dialogue, where a line's "earlier lines" are the speaker's own earlier
  lines and its conflicts are those the judge named;
- Q&A: the fraction of persona probe answers graded correct.

Verdicts the strict parsers could not read arrive as ``None``; they are left out of the
score and counted in the result instead of being guessed.

Conventions, read off the stored scores of the released data (see
:func:`release_speaker_scores`, which reproduces every stored score there):

- a line with no earlier line by the same speaker is not judged for line-to-line and adds
  nothing to either sum;
- a speaker without any scoreable line (a speaker with one line, for line-to-line) has no
  score here (``None``); the release stored ``0`` for such a speaker;
- the release counted every index the judge named that falls on the speaker's turns, even
  repeated ones and ones at or after the judged line, and read an output without a
  readable list as "no conflicts". :func:`count_conflicts` offers both that rule and the
  stricter one used for our own scores (distinct earlier lines of the same speaker only).

File-level polarity (does YES mean "contradicts" or "aligns"?) differs between released
files; :func:`resolve_polarity` settles it per file from the stored scores.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from persona_jax.metrics.verdicts import (
    POLARITIES,
    Polarity,
    parse_conflict_list,
    parse_prompt_verdict,
    parse_yes_no,
    release_inconsistent,
    release_index_list,
    release_probe_correct,
)

if TYPE_CHECKING:
    from persona_jax.data.released import Dialogue

ConflictRule = Literal["earlier_same_speaker", "release"]
DEFAULT_TOLERANCE = 1e-6


class PolarityError(ValueError):
    """A file's stored scores fit neither reading (or both readings) of the judge's YES."""


@dataclass(frozen=True)
class MetricResult:
    """A score with the bookkeeping that says how much evidence stands behind it.

    ``score`` is None when nothing could be scored (no judged lines, or all unparsed).
    ``n_scored`` counts the verdicts that entered the score, ``n_unparsed`` those left out
    because the judge's output could not be read.
    """

    score: float | None
    n_scored: int
    n_unparsed: int


@dataclass(frozen=True)
class LineConflicts:
    """One judged line for line-to-line scoring.

    ``n_earlier`` is how many lines the same speaker said before it; ``n_conflicts`` how
    many of them the judge found in conflict with it, or None if the output was unreadable.
    """

    n_earlier: int
    n_conflicts: int | None


def _fraction_true(flags: Sequence[bool | None]) -> MetricResult:
    parsed = [flag for flag in flags if flag is not None]
    n_unparsed = len(flags) - len(parsed)
    if not parsed:
        return MetricResult(None, 0, n_unparsed)
    return MetricResult(sum(parsed) / len(parsed), len(parsed), n_unparsed)


def prompt_to_line(inconsistent: Sequence[bool | None]) -> MetricResult:
    """Fraction of one speaker's judged lines that are consistent with the persona.

    ``inconsistent[k]`` is the verdict for the speaker's k-th judged line (True: the line
    contradicts the persona; None: unparsed, excluded).
    """
    return _fraction_true([None if flag is None else not flag for flag in inconsistent])


def line_to_line(lines: Sequence[LineConflicts]) -> MetricResult:
    """``1 - sum(conflicts) / sum(earlier lines)`` over one speaker's judged lines.

    Lines without earlier lines are skipped (they cannot conflict with anything); unparsed
    lines are left out of both sums and counted.
    """
    conflicts = 0
    earlier = 0
    n_scored = 0
    n_unparsed = 0
    for line in lines:
        if line.n_earlier < 0 or (line.n_conflicts is not None and line.n_conflicts < 0):
            raise ValueError(f"negative count in {line}")
        if line.n_earlier == 0:
            continue
        if line.n_conflicts is None:
            n_unparsed += 1
            continue
        conflicts += line.n_conflicts
        earlier += line.n_earlier
        n_scored += 1
    if earlier == 0:
        return MetricResult(None, n_scored, n_unparsed)
    return MetricResult(1.0 - conflicts / earlier, n_scored, n_unparsed)


def qa_accuracy(correct: Sequence[bool | None]) -> MetricResult:
    """Fraction of probe answers graded correct (None: ungradable, excluded)."""
    return _fraction_true(correct)


def count_conflicts(
    named: Sequence[int],
    line_index: int,
    speaker_of: Sequence[int],
    *,
    rule: ConflictRule = "earlier_same_speaker",
) -> int:
    """How many conflicts the indices a judge named for line ``line_index`` amount to.

    ``speaker_of[k]`` is the speaker (1 or 2) of conversation line k; the judged line's
    speaker is ``speaker_of[line_index]``. ``"earlier_same_speaker"`` counts distinct
    named lines before the judged one that the same speaker said. ``"release"`` counts
    every named index on the speaker's turns (the speakers alternate, so by parity), with
    repeats and indices at or after the judged line, as the stored scores did.
    """
    speaker = speaker_of[line_index]
    if rule == "earlier_same_speaker":
        return len({j for j in named if 0 <= j < line_index and speaker_of[j] == speaker})
    if rule == "release":
        same_parity = line_index % 2
        return sum(1 for j in named if j % 2 == same_parity)
    raise ValueError(f"unknown conflict rule {rule!r}")


def _close(a: float, b: float, tolerance: float) -> bool:
    return math.isclose(a, b, rel_tol=0.0, abs_tol=tolerance)


def probe_grades(dialogue: Dialogue, speaker: int) -> list[bool | None]:
    """Strictly parsed grades of the speaker's probe answers, in order; None if ungradable.

    A grade given against a key the release lost means nothing and is None, like a grade
    that is not a readable YES/NO.
    """
    probes = dialogue.probes.get(speaker, ())
    grades: list[bool | None] = []
    for round_ in dialogue.probe_rounds:
        if round_.speaker != speaker:
            continue
        for k, grade in enumerate(round_.grades):
            usable = k < len(probes) and probes[k].answer is not None
            grades.append(parse_yes_no(grade) if usable else None)
    return grades


def speaker_scores(dialogue: Dialogue, speaker: int, polarity: Polarity) -> dict[str, MetricResult]:
    """One speaker's three metrics from the strict parsers (unreadable verdicts excluded).

    Keys ``prompt``, ``index`` and ``qa``; a metric with nothing to score has score None.
    Conflicts count distinct earlier lines of the same speaker only.
    """
    speaker_of = dialogue.speaker_of
    prompt = prompt_to_line(
        [
            parse_prompt_verdict(j.text, polarity)
            for j in dialogue.prompt_judgements
            if speaker_of[j.index] == speaker
        ]
    )
    index_lines = []
    for j in dialogue.index_judgements:
        if speaker_of[j.index] != speaker:
            continue
        named = parse_conflict_list(j.text)
        conflicts = None if named is None else count_conflicts(named, j.index, speaker_of)
        index_lines.append(LineConflicts(dialogue.n_earlier_same_speaker(j.index), conflicts))
    return {
        "prompt": prompt,
        "index": line_to_line(index_lines),
        "qa": qa_accuracy(probe_grades(dialogue, speaker)),
    }


def release_speaker_scores(
    dialogue: Dialogue, speaker: int, polarity: Polarity
) -> dict[str, float]:
    """One speaker's scores recomputed exactly as the release computed its stored ones.

    Keys: ``prompt`` and ``index`` always, ``qa`` when the dialogue holds Q&A rounds for the
    speaker (mean number of probes answered correctly per line, out of the probe count).
    A speaker with nothing to score gets 0, the value the release stored.
    """
    speaker_of = dialogue.speaker_of
    prompt_flags = [
        release_inconsistent(j.text, polarity)
        for j in dialogue.prompt_judgements
        if speaker_of[j.index] == speaker
    ]
    prompt = 0.0
    if prompt_flags:
        prompt = prompt_to_line([bool(flag) for flag in prompt_flags]).score or 0.0
    index_lines = [
        LineConflicts(
            n_earlier=dialogue.n_earlier_same_speaker(j.index),
            n_conflicts=count_conflicts(
                release_index_list(j.text), j.index, speaker_of, rule="release"
            ),
        )
        for j in dialogue.index_judgements
        if speaker_of[j.index] == speaker
    ]
    index_score = line_to_line(index_lines).score
    scores = {"prompt": prompt, "index": 0.0 if index_score is None else index_score}
    rounds = [r for r in dialogue.probe_rounds if r.speaker == speaker]
    if rounds:
        per_line = [sum(release_probe_correct(g) for g in r.grades) for r in rounds]
        scores["qa"] = sum(per_line) / len(per_line)
    return scores


def _prompt_mismatches(
    dialogues: Sequence[Dialogue], polarity: Polarity, tolerance: float
) -> list[str]:
    mismatches = []
    for dialogue in dialogues:
        for speaker, stored in sorted(dialogue.stored_prompt_scores.items()):
            got = release_speaker_scores(dialogue, speaker, polarity)["prompt"]
            if not _close(got, stored, tolerance):
                mismatches.append(
                    f"{dialogue.dialogue_id} speaker {speaker}: stored {stored}, got {got}"
                )
    return mismatches


def resolve_polarity(
    dialogues: Iterable[Dialogue], *, source: str = "", tolerance: float = DEFAULT_TOLERANCE
) -> Polarity:
    """Which reading of YES reproduces one file's stored prompt-to-line scores.

    Under ``"yes_inconsistent"`` a judge output counts against the line when it contains
    YES, under ``"yes_consistent"`` when it contains NO; an output with neither counts as
    consistent, which is how the stored scores treat outputs without a verdict. Exactly one
    reading must reproduce every stored per-speaker score within ``tolerance``.

    Raises:
        PolarityError: naming the file (``source``) when neither reading, or both, fit.
    """
    dialogues = list(dialogues)
    label = source or (dialogues[0].source if dialogues else "<no dialogues>")
    if not any(d.stored_prompt_scores for d in dialogues):
        raise PolarityError(f"{label}: no stored prompt-to-line scores to resolve polarity")
    misses = {p: _prompt_mismatches(dialogues, p, tolerance) for p in POLARITIES}
    fitting = [p for p in POLARITIES if not misses[p]]
    if len(fitting) == 1:
        return fitting[0]
    if not fitting:
        detail = "; ".join(f"{p}: {len(m)} mismatches, e.g. {m[0]}" for p, m in misses.items())
        raise PolarityError(
            f"{label}: neither reading of YES reproduces the stored prompt-to-line scores "
            f"({detail})"
        )
    raise PolarityError(
        f"{label}: both readings of YES reproduce the stored scores; polarity is undecidable"
    )
