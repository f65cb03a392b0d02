"""Reader for the paper's released dialogue files, as plain typed records.

A released file is a JSON list of dialogues; each holds two speakers' personas, the
conversation as ``[index, "Name: line"]`` pairs, the judge's raw outputs per judged line
(prompt-to-line and line-to-line), the scores the authors stored, and in some files Q&A
probes. This module turns a file into :class:`Dialogue` records (format errors name the
file and dialogue), and a dialogue into labelled lines (:func:`iter_labelled_lines`) and
probe items (:func:`iter_probes`), counting in a :class:`BuildReport` everything it could
not label and why.

Labels come from the strict parsers in :mod:`persona_jax.metrics.verdicts`: an output that
does not settle its verdict is skipped and counted, never guessed. An output without any
YES/NO or list that states its verdict in unmixed words ("does not contradict his
background", "No conflicting lines found.") is read from those words and counted apart.
What YES means differs between files; each file's polarity is resolved from its stored
scores first (:func:`persona_jax.metrics.consistency.resolve_polarity`), and a file that
fits neither reading is refused with :class:`~persona_jax.metrics.consistency.PolarityError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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

Task = Literal["chatting", "education", "therapy"]
Kind = Literal["prompt_to_line", "line_to_line"]
KINDS: tuple[Kind, ...] = ("prompt_to_line", "line_to_line")
TASKS: dict[str, Task] = {"Chatting": "chatting", "Education": "education", "Therapy": "therapy"}
# Speaker roles per task, named as the project's persona bank names simulated users.
ROLES: dict[Task, dict[int, str]] = {
    "chatting": {1: "chat", 2: "chat"},
    "education": {1: "teacher", 2: "student"},
    "therapy": {1: "therapist", 2: "patient"},
}
LABEL_NAMES = ("consistent", "inconsistent")
DIALOGUE_GLOB = "*/exp/**/*.json"
_MAX_NAME_CHARS = 60
_OPTION = re.compile(r"^\s*([A-E])[).:]\s*(.+?)\s*$", re.MULTILINE)
_KEY = re.compile(r"^\s*Answer:\s*\(?([A-E])\b")


class ReleasedFormatError(ValueError):
    """A released file does not have the structure this reader relies on."""


def persona_id(text: str) -> str:
    """A stable id for a persona text (the release stores no ids): a hash of the text."""
    return "p" + hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Line:
    """One conversation line; ``raw`` is as stored, ``name``/``text`` split at the colon."""

    index: int
    speaker: int
    name: str
    text: str
    raw: str


@dataclass(frozen=True)
class JudgeOutput:
    """The judge's raw output for conversation line ``index``."""

    index: int
    text: str


@dataclass(frozen=True)
class Probe:
    """A multiple-choice question about a persona; ``answer`` is None when the key is lost.

    The release cut the key out of the generator's output at "Answer:"; where the generator
    wrote no "Answer:", the stored key is the output's last character and the question lost
    it too, so no key can be recovered.
    """

    question: str
    options: tuple[str, ...]
    answer: int | None
    raw_key: str


@dataclass(frozen=True)
class ProbeRound:
    """The speaker's answers to its probes after line ``line_index``, and their grades."""

    line_index: int
    speaker: int
    answers: tuple[str, ...]
    grades: tuple[str, ...]
    stored_correct: int


@dataclass(frozen=True)
class Dialogue:
    """One released dialogue with its judgements and stored scores."""

    source: str
    position: int
    task: Task
    personas: Mapping[int, str]
    pturn: int
    topic: str
    grade: str
    lines: tuple[Line, ...]
    prompt_judgements: tuple[JudgeOutput, ...]
    index_judgements: tuple[JudgeOutput, ...]
    stored_prompt_scores: Mapping[int, float]
    stored_index_scores: Mapping[int, float]
    stored_qa_scores: Mapping[int, float]
    probes: Mapping[int, tuple[Probe, ...]]
    probe_rounds: tuple[ProbeRound, ...]

    @property
    def dialogue_id(self) -> str:
        return f"{self.source}#{self.position}"

    @property
    def speaker_of(self) -> tuple[int, ...]:
        return tuple(line.speaker for line in self.lines)

    def n_earlier_same_speaker(self, index: int) -> int:
        speaker = self.lines[index].speaker
        return sum(1 for line in self.lines[:index] if line.speaker == speaker)

    def persona_id(self, speaker: int) -> str:
        return persona_id(self.personas[speaker])


def speaker_at(index: int, pturn: int) -> int:
    """Who says line ``index``: agent ``pturn`` opens, then the agents alternate."""
    return pturn if index % 2 == 0 else 3 - pturn


def find_dialogue_files(root: Path) -> list[Path]:
    """The released dialogue files under a data folder, in a fixed order."""
    return sorted(p for p in Path(root).glob(DIALOGUE_GLOB) if p.is_file())


def source_name(path: Path, root: Path | None = None) -> str:
    """A file's name relative to the data folder, e.g. ``therapy/exp/dialogues/x.json``."""
    path = Path(path)
    if root is not None:
        # abspath, not resolve: a manual dir of symlinks keeps the names it gives the files.
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    parts = path.parts
    if "exp" in parts[1:]:
        return "/".join(parts[parts.index("exp", 1) - 1 :])
    return path.name


def _fail(where: str, problem: str) -> ReleasedFormatError:
    return ReleasedFormatError(f"{where}: {problem}")


def _pairs(raw: Any, where: str, field_name: str, n_lines: int) -> tuple[JudgeOutput, ...]:
    if not isinstance(raw, list):
        raise _fail(where, f"{field_name} is not a list")
    out = []
    for entry in raw:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str)):
            raise _fail(where, f"{field_name} entry is not [index, text]: {str(entry)[:80]}")
        index = entry[0]
        if not isinstance(index, int) or not 0 <= index < n_lines:
            raise _fail(where, f"{field_name} names line {index!r} outside the conversation")
        out.append(JudgeOutput(index, entry[1]))
    return tuple(out)


def _split_name(raw: str) -> tuple[str, str]:
    name, sep, text = raw.partition(":")
    if sep and 0 < len(name.strip()) <= _MAX_NAME_CHARS and "\n" not in name:
        return name.strip(), text.strip()
    return "", raw.strip()


def _parse_probe(question: str, key: str) -> Probe:
    body = question.strip().removeprefix("Question:").strip()
    options = _OPTION.findall(body)
    letters = "".join(letter for letter, _ in options)
    first = _OPTION.search(body)
    stem = body[: first.start()].strip() if first else body
    if letters != "ABCDE"[: len(letters)] or len(letters) < 2:
        options = []
    match = _KEY.match(key)
    answer = None
    if match and options and "ABCDE".index(match.group(1)) < len(options):
        answer = "ABCDE".index(match.group(1))
    return Probe(stem, tuple(text for _, text in options), answer, key)


def _probe_rounds(raw: list[Any], lines: tuple[Line, ...], where: str) -> tuple[ProbeRound, ...]:
    rounds = []
    cursor = 0
    for entry in raw:
        if not (isinstance(entry, list) and len(entry) == 4):
            raise _fail(
                where, "eval_survey_consistency entry is not [line, score, answers, grades]"
            )
        text, stored, answers, grades = entry
        while cursor < len(lines) and lines[cursor].raw != text:
            cursor += 1
        if cursor == len(lines):
            raise _fail(where, "eval_survey_consistency quotes a line not in the conversation")
        line = lines[cursor]
        rounds.append(
            ProbeRound(line.index, line.speaker, tuple(answers), tuple(grades), int(stored))
        )
        cursor += 1
    return tuple(rounds)


def _dialogue(raw: Any, source: str, position: int) -> Dialogue:
    where = f"{source} dialogue {position}"
    if not isinstance(raw, dict):
        raise _fail(where, "is not a JSON object")
    for key in ("task_name", "P1", "P2", "conversation", "pturn"):
        if key not in raw:
            raise _fail(where, f"lacks field {key!r}")
    if raw["task_name"] not in TASKS:
        raise _fail(where, f"unknown task_name {raw['task_name']!r}")
    pturn = raw["pturn"]
    if pturn not in (1, 2):
        raise _fail(where, f"pturn is {pturn!r}, expected 1 or 2")
    lines = []
    for position_in_conv, entry in enumerate(raw["conversation"]):
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] == position_in_conv):
            raise _fail(
                where, f"conversation entry {position_in_conv} is not [{position_in_conv}, text]"
            )
        name, text = _split_name(entry[1])
        lines.append(Line(entry[0], speaker_at(entry[0], pturn), name, text, entry[1]))
    lines_t = tuple(lines)
    n = len(lines_t)
    stored = {
        kind: {
            s: float(raw[f"P{s}_{kind}_consistency_score"])
            for s in (1, 2)
            if f"P{s}_{kind}_consistency_score" in raw
        }
        for kind in ("prompt", "index", "survey")
    }
    probes = {}
    for s in (1, 2):
        test = raw.get(f"P{s}_backstory_test")
        if test is None:
            continue
        if not (isinstance(test, list) and len(test) == 2 and len(test[0]) == len(test[1])):
            raise _fail(where, f"P{s}_backstory_test is not [questions, keys]")
        probes[s] = tuple(_parse_probe(q, k) for q, k in zip(*test, strict=True))
    return Dialogue(
        source=source,
        position=position,
        task=TASKS[raw["task_name"]],
        personas={1: str(raw["P1"]), 2: str(raw["P2"])},
        pturn=pturn,
        topic=str(raw.get("topic", "")),
        grade=str(raw.get("grade", "")),
        lines=lines_t,
        prompt_judgements=_pairs(
            raw.get("eval_prompt_consistency", []), where, "eval_prompt_consistency", n
        ),
        index_judgements=_pairs(
            raw.get("eval_index_consistency", []), where, "eval_index_consistency", n
        ),
        stored_prompt_scores=stored["prompt"],
        stored_index_scores=stored["index"],
        stored_qa_scores=stored["survey"],
        probes=probes,
        probe_rounds=_probe_rounds(raw.get("eval_survey_consistency", []), lines_t, where),
    )


def load_dialogues(path: Path, *, root: Path | None = None) -> list[Dialogue]:
    """Every dialogue in one released file; raises :class:`ReleasedFormatError` on bad form."""
    path = Path(path)
    source = source_name(path, root)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ReleasedFormatError(f"{path}: cannot read a JSON file ({err})") from err
    if not isinstance(raw, list):
        raise ReleasedFormatError(f"{path}: top level is not a list of dialogues")
    return [_dialogue(item, source, position) for position, item in enumerate(raw)]


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
