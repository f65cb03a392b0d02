"""Reader for the paper's released dialogue files, as plain typed records.

A released file is a JSON list of dialogues; each holds two speakers' personas, the
conversation as ``[index, "Name: line"]`` pairs, the judge's raw outputs per judged line
(prompt-to-line and line-to-line), the scores the authors stored, and in some files Q&A
probes. This module turns a file into :class:`Dialogue` records (format errors name the
file and dialogue) and reads nothing into the judge's outputs;
:mod:`persona_jax.data.release_labels` turns a dialogue into labelled lines and probe items.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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


def split_name(raw: str) -> tuple[str, str]:
    """``"Name: text"`` -> (name, text); ("", text) when what precedes the first colon is not
    a plausible speaker name (empty, too long, or across lines)."""
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
        name, text = split_name(entry[1])
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
