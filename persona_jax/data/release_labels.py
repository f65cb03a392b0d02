"""Labels from the released dialogues: judged lines and Q&A probes, with what was left out.

:mod:`persona_jax.data.released` reads a file into :class:`~persona_jax.data.released.Dialogue`
records; this module turns a dialogue into labelled lines (:func:`labelled_lines`) and probe
items (:func:`probe_items`), counting in a :class:`BuildReport` everything it could not label
and why.

Labels come from the strict parsers in :mod:`persona_jax.metrics.verdicts`: an output that
does not settle its verdict is skipped and counted, never guessed. An output without any
YES/NO or list that states its verdict in unmixed words ("does not contradict his
background", "No conflicting lines found.") is read from those words and counted apart.
What YES means differs between files; each file's polarity is resolved from its stored
scores first (:func:`persona_jax.metrics.consistency.resolve_polarity`), and a file that
fits neither reading is refused with :class:`~persona_jax.metrics.consistency.PolarityError`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from persona_jax.data.released import (
    KINDS,
    ROLES,
    Dialogue,
    Kind,
    Task,
    load_dialogues,
    persona_id,
)
from persona_jax.metrics.consistency import resolve_polarity
from persona_jax.metrics.verdicts import (
    Polarity,
    parse_conflict_list,
    parse_index_list,
    parse_prompt_verdict,
    parse_yes_no,
    release_inconsistent,
    release_index_list,
)


@dataclass(frozen=True)
class LabelledLine:
    """One judged line of a persona-holding speaker, with what the judge said about it.

    ``prompt_label`` is 1 when the line contradicts the persona, 0 when it is consistent,
    None when not judged or unreadable. ``index_label`` is 1 when the judge named at least
    one earlier line of the same speaker that conflicts with this one (those are
    ``conflict_indices``), 0 when it named none, None when not judged or unreadable.
    ``history`` holds the conversation's earlier lines as stored (with speaker names).
    """

    task: Task
    role: str
    speaker: int
    speaker_name: str
    persona: str
    persona_id: str
    dialogue_id: str
    source: str
    line_index: int
    history: tuple[str, ...]
    line: str
    prompt_label: int | None
    index_label: int | None
    conflict_indices: tuple[int, ...] | None
    polarity: Polarity


@dataclass(frozen=True)
class ProbeItem:
    """A Q&A probe about a persona with a usable key (``answer`` indexes ``options``)."""

    task: Task
    role: str
    persona: str
    persona_id: str
    dialogue_id: str
    source: str
    question: str
    options: tuple[str, ...]
    answer: int


@dataclass
class BuildReport:
    """What reading the release produced and what it had to leave out, and why.

    Counters are keyed by task (and kind, ``prompt_to_line`` or ``line_to_line``).
    ``differs_from_release`` counts outputs with an explicit verdict (YES/NO, or a list)
    that the release's own lenient rule read differently (see
    :mod:`persona_jax.metrics.verdicts`). ``read_from_words`` counts labels taken from a
    verdict stated only in words; the release read every such output as consistent (or as
    naming no conflicts), so those are left out of ``differs_from_release``.
    """

    polarity: dict[str, Polarity] = field(default_factory=dict)
    dialogues: Counter[str] = field(default_factory=Counter)
    judged: Counter[tuple[str, str]] = field(default_factory=Counter)
    labelled: Counter[tuple[str, str]] = field(default_factory=Counter)
    skipped: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    labels: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    differs_from_release: Counter[tuple[str, str]] = field(default_factory=Counter)
    read_from_words: Counter[tuple[str, str]] = field(default_factory=Counter)
    dropped_indices: Counter[str] = field(default_factory=Counter)
    probes: Counter[str] = field(default_factory=Counter)
    probes_skipped: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def unparsed_rate(self, task: str, kind: Kind) -> float:
        judged = self.judged[(task, kind)]
        return self.skipped[(task, kind, "unparsed verdict")] / judged if judged else 0.0

    def format(self) -> str:
        """A plain-text summary, one fact per line."""
        out = ["files and polarity (what YES means):"]
        out += [f"  {src}: {pol}" for src, pol in sorted(self.polarity.items())]
        for task in sorted(self.dialogues):
            out.append(f"{task}: {self.dialogues[task]} dialogues")
            for kind in KINDS:
                judged = self.judged[(task, kind)]
                if not judged:
                    continue
                n0, n1 = self.labels[(task, kind, 0)], self.labels[(task, kind, 1)]
                total = max(n0 + n1, 1)
                out.append(
                    f"  {kind}: judged {judged}, labelled {self.labelled[(task, kind)]}, "
                    f"unparsed {100 * self.unparsed_rate(task, kind):.2f}%, "
                    f"consistent {n0} / inconsistent {n1} ({100 * n1 / total:.1f}% inconsistent), "
                    "read differently by the release's rule "
                    f"{self.differs_from_release[(task, kind)]}, "
                    f"read from words {self.read_from_words[(task, kind)]}"
                )
                for (t, k, reason), n in sorted(self.skipped.items()):
                    if t == task and k == kind:
                        out.append(f"    skipped {n}: {reason}")
            if self.dropped_indices[task]:
                out.append(
                    f"  line_to_line: {self.dropped_indices[task]} named indices dropped "
                    "(not an earlier line of the same speaker)"
                )
            if self.probes[task] or any(t == task for t, _ in self.probes_skipped):
                out.append(f"  qa probes: {self.probes[task]} usable")
                for (t, reason), n in sorted(self.probes_skipped.items()):
                    if t == task:
                        out.append(f"    skipped {n}: {reason}")
        if self.examples:
            out.append("examples per config/task/split:")
            out += [f"  {c}/{t}/{s}: {n}" for (c, t, s), n in sorted(self.examples.items())]
        return "\n".join(out)


def _prompt_labels(dialogue: Dialogue, polarity: Polarity, report: BuildReport) -> dict[int, int]:
    task, kind = dialogue.task, "prompt_to_line"
    labels = {}
    for judged in dialogue.prompt_judgements:
        report.judged[(task, kind)] += 1
        speaker = dialogue.lines[judged.index].speaker
        if not dialogue.personas[speaker].strip():
            report.skipped[(task, kind, "judged speaker has no persona")] += 1
            continue
        inconsistent = parse_prompt_verdict(judged.text, polarity)
        if inconsistent is None:
            report.skipped[(task, kind, "unparsed verdict")] += 1
            continue
        if parse_yes_no(judged.text) is None:
            report.read_from_words[(task, kind)] += 1
        elif inconsistent != release_inconsistent(judged.text, polarity):
            report.differs_from_release[(task, kind)] += 1
        labels[judged.index] = int(inconsistent)
    return labels


def _index_labels(dialogue: Dialogue, report: BuildReport) -> dict[int, tuple[int, ...]]:
    task, kind = dialogue.task, "line_to_line"
    speaker_of = dialogue.speaker_of
    labels = {}
    for judged in dialogue.index_judgements:
        report.judged[(task, kind)] += 1
        i = judged.index
        if not dialogue.personas[speaker_of[i]].strip():
            report.skipped[(task, kind, "judged speaker has no persona")] += 1
            continue
        if dialogue.n_earlier_same_speaker(i) == 0:
            report.skipped[(task, kind, "no earlier line of the same speaker")] += 1
            continue
        named = parse_conflict_list(judged.text)
        if named is None:
            report.skipped[(task, kind, "unparsed verdict")] += 1
            continue
        if parse_index_list(judged.text) is None:
            report.read_from_words[(task, kind)] += 1
        elif named != release_index_list(judged.text):
            report.differs_from_release[(task, kind)] += 1
        valid = sorted({j for j in named if 0 <= j < i and speaker_of[j] == speaker_of[i]})
        if named and not valid:
            report.skipped[
                (task, kind, "names only lines that are not earlier same-speaker lines")
            ] += 1
            continue
        report.dropped_indices[task] += len(set(named)) - len(valid)
        labels[i] = tuple(valid)
    return labels


def labelled_lines(
    dialogue: Dialogue, polarity: Polarity, report: BuildReport
) -> Iterator[LabelledLine]:
    """The dialogue's judged lines that got at least one readable label, in line order."""
    report.dialogues[dialogue.task] += 1
    prompt = _prompt_labels(dialogue, polarity, report)
    index = _index_labels(dialogue, report)
    for i in sorted(set(prompt) | set(index)):
        line = dialogue.lines[i]
        conflicts = index.get(i)
        labels = {"prompt_to_line": prompt.get(i)}
        labels["line_to_line"] = None if conflicts is None else int(bool(conflicts))
        for kind, label in labels.items():
            if label is not None:
                report.labelled[(dialogue.task, kind)] += 1
                report.labels[(dialogue.task, kind, label)] += 1
        yield LabelledLine(
            task=dialogue.task,
            role=ROLES[dialogue.task][line.speaker],
            speaker=line.speaker,
            speaker_name=line.name,
            persona=dialogue.personas[line.speaker],
            persona_id=dialogue.persona_id(line.speaker),
            dialogue_id=dialogue.dialogue_id,
            source=dialogue.source,
            line_index=i,
            history=tuple(earlier.raw.strip() for earlier in dialogue.lines[:i]),
            line=line.text,
            prompt_label=labels["prompt_to_line"],
            index_label=labels["line_to_line"],
            conflict_indices=conflicts,
            polarity=polarity,
        )


def iter_labelled_lines(
    path: Path, *, report: BuildReport | None = None, root: Path | None = None
) -> Iterator[LabelledLine]:
    """Labelled lines of one released file, after resolving the file's polarity.

    Raises:
        ReleasedFormatError: the file's structure is not the released format.
        PolarityError: the file's stored scores fit neither reading of YES.
    """
    report = BuildReport() if report is None else report
    dialogues = load_dialogues(path, root=root)
    if not dialogues:
        return
    polarity = resolve_polarity(dialogues, source=dialogues[0].source)
    report.polarity[dialogues[0].source] = polarity
    for dialogue in dialogues:
        yield from labelled_lines(dialogue, polarity, report)


def probe_items(dialogue: Dialogue, report: BuildReport) -> Iterator[ProbeItem]:
    """The dialogue's Q&A probes whose options and key could be read."""
    for speaker, probes in sorted(dialogue.probes.items()):
        persona = dialogue.personas[speaker]
        for probe in probes:
            if not probe.options:
                report.probes_skipped[(dialogue.task, "options unreadable")] += 1
            elif probe.answer is None:
                report.probes_skipped[(dialogue.task, "answer key lost in the release")] += 1
            else:
                report.probes[dialogue.task] += 1
                yield ProbeItem(
                    task=dialogue.task,
                    role=ROLES[dialogue.task][speaker],
                    persona=persona,
                    persona_id=persona_id(persona),
                    dialogue_id=dialogue.dialogue_id,
                    source=dialogue.source,
                    question=probe.question,
                    options=probe.options,
                    answer=probe.answer,
                )


def iter_probes(
    path: Path, *, report: BuildReport | None = None, root: Path | None = None
) -> Iterator[ProbeItem]:
    """Usable Q&A probes of one released file (files without probes yield nothing)."""
    report = BuildReport() if report is None else report
    for dialogue in load_dialogues(path, root=root):
        yield from probe_items(dialogue, report)
