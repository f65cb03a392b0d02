"""Schema, loader and validator for the persona bank.

The bank is hand-written JSON (``personas/<role>.json``) so that it can be
reviewed and extended without code changes. Because every reward, every
evaluation split and every Q&A consistency score downstream is computed from
these files, a malformed entry would silently corrupt training rather than
crash it. This module is therefore strict: it checks the whole file, collects
every problem, and raises one :class:`PersonaBankError` whose lines each name
the file, the persona id and the field, e.g.::

    patient.json: patient-012: probes[3].answer: 5 is not an option index (4 options)

Bank file layout::

    {"role": "patient", "schema_version": 1, "personas": [
        {"id": "patient-007", "split": "train", "description": "I'm ...",
         "facts": {...}, "probes": [{"question": "...", "options": [...], "answer": 2}]}]}

Split rule: a persona whose number ``NNN`` is divisible by 4 is ``eval``,
every other persona is ``train``. The rule is a function of the id alone, so
adding personas never moves an existing one between splits (no evaluation
persona leaks into training when the bank grows).

The partner side of each dialogue (therapist, teacher, chat partner) and the
simulated user's role prompt live in ``partners.json``: :mod:`persona_jax.data.partners`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from persona_jax.data.validation import (
    PersonaBankError,
    check_document,
    check_keys,
    check_str,
    check_str_list,
    is_int,
    read_json,
    resolve,
    type_name,
)

ROLES: tuple[str, ...] = ("patient", "student", "chat")
"""The simulated-user roles; each has one bank file ``<role>.json``."""

SPLITS: tuple[str, ...] = ("train", "eval")
EVAL_EVERY = 4
DESCRIPTION_WORDS: tuple[int, int] = (60, 200)
MIN_PROBES = 5
OPTION_COUNTS: tuple[int, ...] = (4, 5)
AGE_RANGE: tuple[int, int] = (5, 100)
MIN_FIRST_PERSON_WORDS = 3

# Fact kinds: "str" (non-empty string), "int" (age), "list" (non-empty list of
# non-empty strings).
COMMON_FACTS: dict[str, str] = {
    "name": "str",
    "age": "int",
    "family": "str",
    "history": "str",
    "beliefs": "list",
    "traits": "list",
    "speaking_style": "str",
    "avoids": "list",
}
ROLE_FACTS: dict[str, dict[str, str]] = {
    "patient": {"occupation": "str", "presenting_concern": "str"},
    "student": {"grade": "str", "learning_style": "str"},
    "chat": {"occupation": "str", "interests": "list"},
}

_PERSONA_KEYS = ("id", "split", "description", "facts", "probes")
_PROBE_KEYS = ("question", "options", "answer")
_BANK_KEYS = ("role", "schema_version", "personas")
_FIRST_PERSON = re.compile(r"\bI\b|\b(?i:me|my|mine|myself)\b")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


@dataclass(frozen=True)
class Probe:
    """A multiple-choice question whose key follows from the persona.

    Used by the Q&A consistency metric: the simulated user answers the probe
    mid-dialogue and is scored against ``answer``.
    """

    question: str
    options: tuple[str, ...]
    answer: int

    @property
    def keyed_option(self) -> str:
        return self.options[self.answer]


@dataclass(frozen=True)
class Persona:
    """One simulated person.

    ``description`` is the first-person text placed in the role prompt;
    ``facts`` is the structured ground truth that judges and probes are checked
    against (excluded from hashing because it is a dict).
    """

    id: str
    role: str
    split: str
    description: str
    facts: dict[str, Any] = field(hash=False)
    probes: tuple[Probe, ...]

    @property
    def name(self) -> str:
        return str(self.facts["name"])

    @property
    def number(self) -> int:
        return int(self.id.rsplit("-", 1)[1])


def required_facts(role: str) -> dict[str, str]:
    """Fact keys a persona of ``role`` must have, mapped to their kind."""
    return {**COMMON_FACTS, **ROLE_FACTS[role]}


def expected_split(number: int) -> str:
    """The split a persona number belongs to (see the module docstring)."""
    return "eval" if number % EVAL_EVERY == 0 else "train"


def _parse_facts(facts: Any, role: str, loc: str, problems: list[str]) -> bool:
    if not isinstance(facts, dict):
        problems.append(f"{loc}facts: expected an object, got {type_name(facts)}")
        return False
    before = len(problems)
    kinds = required_facts(role)
    check_keys(facts, tuple(kinds), f"{loc}facts.", problems)
    for key, kind in kinds.items():
        if key not in facts:
            continue
        value, where = facts[key], f"{loc}facts.{key}"
        if kind == "str":
            check_str(value, where, problems)
        elif kind == "list":
            check_str_list(value, where, problems)
        elif not is_int(value):
            problems.append(f"{where}: expected an integer, got {type_name(value)}")
        elif not AGE_RANGE[0] <= value <= AGE_RANGE[1]:
            problems.append(f"{where}: {value} is outside {AGE_RANGE[0]}..{AGE_RANGE[1]}")
    return len(problems) == before


def _parse_probe(raw: Any, loc: str, problems: list[str]) -> Probe | None:
    if not isinstance(raw, dict):
        problems.append(f"{loc}: expected an object, got {type_name(raw)}")
        return None
    before = len(problems)
    check_keys(raw, _PROBE_KEYS, f"{loc}.", problems)
    if "question" in raw:
        check_str(raw["question"], f"{loc}.question", problems)
    options = raw.get("options")
    options_ok = "options" in raw and check_str_list(options, f"{loc}.options", problems)
    if options_ok:
        if len(options) not in OPTION_COUNTS:
            counts = " or ".join(map(str, OPTION_COUNTS))
            problems.append(f"{loc}.options: has {len(options)} options; need {counts}")
        seen: dict[str, int] = {}
        for k, option in enumerate(options):
            norm = " ".join(option.casefold().split())
            if norm in seen:
                problems.append(f"{loc}.options[{k}]: duplicates options[{seen[norm]}]")
            seen.setdefault(norm, k)
    if "answer" in raw:
        answer = raw["answer"]
        if not is_int(answer):
            problems.append(f"{loc}.answer: expected an integer, got {type_name(answer)}")
        elif options_ok and not 0 <= answer < len(options):
            problems.append(
                f"{loc}.answer: {answer} is not an option index ({len(options)} options)"
            )
    if len(problems) != before:
        return None
    return Probe(question=raw["question"], options=tuple(options), answer=raw["answer"])


def _parse_probes(raw_probes: Any, loc: str, problems: list[str]) -> list[Probe]:
    if not isinstance(raw_probes, list):
        problems.append(f"{loc}probes: expected a list, got {type_name(raw_probes)}")
        return []
    if len(raw_probes) < MIN_PROBES:
        problems.append(f"{loc}probes: has {len(raw_probes)}; need at least {MIN_PROBES}")
    probes: list[Probe] = []
    questions: dict[str, int] = {}
    for j, raw_probe in enumerate(raw_probes):
        probe = _parse_probe(raw_probe, f"{loc}probes[{j}]", problems)
        if probe is None:
            continue
        norm = " ".join(probe.question.casefold().split())
        if norm in questions:
            problems.append(f"{loc}probes[{j}].question: repeats probes[{questions[norm]}]")
        questions.setdefault(norm, j)
        probes.append(probe)
    answers = {probe.answer for probe in probes}
    if len(probes) >= MIN_PROBES and len(answers) == 1:
        problems.append(
            f"{loc}probes: every answer is index {answers.pop()}; vary the keyed "
            "position so a position-biased guesser cannot score"
        )
    return probes


def _check_description(
    description: Any, facts: Any, facts_ok: bool, loc: str, problems: list[str]
) -> None:
    if not check_str(description, f"{loc}description", problems):
        return
    words = len(description.split())
    low, high = DESCRIPTION_WORDS
    if not low <= words <= high:
        problems.append(f"{loc}description: {words} words; need {low}..{high}")
    if len(_FIRST_PERSON.findall(description)) < MIN_FIRST_PERSON_WORDS:
        problems.append(
            f"{loc}description: not written in the first person "
            "(the role prompt speaks as the persona: 'I'm ..., my ...')"
        )
    if facts_ok:
        first = facts["name"].split()[0]
        if not re.search(rf"\b{re.escape(first)}\b", description, re.IGNORECASE):
            problems.append(
                f"{loc}description: does not mention the first name {first!r} "
                "from facts.name, so the simulated user would not know its own name"
            )


def _parse_persona(
    raw: Any, index: int, role: str, source: str, problems: list[str]
) -> Persona | None:
    """Check one persona; returns it, or None after recording its problems."""
    if not isinstance(raw, dict):
        problems.append(f"{source}: personas[{index}]: expected an object, got {type_name(raw)}")
        return None
    pid = raw.get("id")
    label = pid if isinstance(pid, str) and pid.strip() else f"personas[{index}]"
    loc = f"{source}: {label}: "
    before = len(problems)
    check_keys(raw, _PERSONA_KEYS, loc, problems)

    number: int | None = None
    if "id" in raw:
        match = re.fullmatch(rf"{re.escape(role)}-(\d{{3}})", pid) if isinstance(pid, str) else None
        if match is None or int(match.group(1)) == 0:
            problems.append(f"{loc}id: {pid!r} is not '{role}-NNN' (three digits, from 001)")
        else:
            number = int(match.group(1))

    split = raw.get("split")
    if "split" in raw:
        if split not in SPLITS:
            problems.append(f"{loc}split: {split!r} is not one of {', '.join(SPLITS)}")
        elif number is not None and split != expected_split(number):
            problems.append(
                f"{loc}split: {split!r} but must be {expected_split(number)!r} "
                f"(ids whose number is divisible by {EVAL_EVERY} are eval, all others train)"
            )

    facts = raw.get("facts")
    facts_ok = "facts" in raw and _parse_facts(facts, role, loc, problems)
    if "description" in raw:
        _check_description(raw["description"], facts, facts_ok, loc, problems)
    probes = _parse_probes(raw["probes"], loc, problems) if "probes" in raw else []

    if len(problems) != before:
        return None
    return Persona(
        id=pid,
        role=role,
        split=split,
        description=raw["description"],
        facts=facts,
        probes=tuple(probes),
    )


def _check_bank_ids(raw_personas: list[Any], role: str, source: str, problems: list[str]) -> None:
    """File-level rules: unique ids, numbering 001..N, exactly 1/4 eval."""
    first_at: dict[str, int] = {}
    numbers: set[int] = set()
    for i, raw in enumerate(raw_personas):
        pid = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(pid, str):
            continue
        if pid in first_at:
            problems.append(
                f"{source}: {pid}: id: duplicate (personas[{first_at[pid]}] and personas[{i}])"
            )
            continue
        first_at[pid] = i
        match = re.fullmatch(rf"{re.escape(role)}-(\d{{3}})", pid)
        if match:
            numbers.add(int(match.group(1)))
    total = len(raw_personas)
    missing = sorted(set(range(1, total + 1)) - numbers)
    if missing:
        shown = ", ".join(f"{role}-{n:03d}" for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        problems.append(
            f"{source}: id: numbering must run {role}-001..{role}-{total:03d}; "
            f"missing {shown}{more}"
        )
    n_eval = sum(1 for raw in raw_personas if isinstance(raw, dict) and raw.get("split") == "eval")
    if total % EVAL_EVERY or n_eval * EVAL_EVERY != total:
        problems.append(
            f"{source}: split: {n_eval} of {total} personas are eval; exactly "
            f"1/{EVAL_EVERY} is required (use a multiple of {EVAL_EVERY} personas)"
        )


def parse_bank(
    data: Any, source: str = "<memory>", expected_role: str | None = None
) -> list[Persona]:
    """Validate an already-decoded bank document; see :func:`validate_bank_file`."""
    problems = check_document(data, _BANK_KEYS, source)

    role = data.get("role")
    if role not in ROLES:
        problems.append(f"{source}: role: {role!r} is not one of {', '.join(ROLES)}")
        raise PersonaBankError(problems)
    if expected_role is not None and role != expected_role:
        problems.append(f"{source}: role: {role!r} but this file holds {expected_role!r} personas")

    raw_personas = data.get("personas")
    if not isinstance(raw_personas, list) or not raw_personas:
        problems.append(f"{source}: personas: expected a non-empty list")
        raise PersonaBankError(problems)

    personas = [
        persona
        for i, raw in enumerate(raw_personas)
        if (persona := _parse_persona(raw, i, role, source, problems)) is not None
    ]
    _check_bank_ids(raw_personas, role, source, problems)
    if problems:
        raise PersonaBankError(problems)
    return personas


def validate_bank_file(path: str | Path) -> list[Persona]:
    """Load and fully check one bank file; raises :class:`PersonaBankError`.

    The file name must be ``<role>.json`` and agree with its ``role`` field, so
    a student file can never be loaded as patients by a path mix-up.
    """
    path = Path(path)
    data = read_json(path)
    if path.stem not in ROLES:
        raise PersonaBankError(
            f"{path.name}: file name must be <role>.json with role one of {', '.join(ROLES)}"
        )
    return parse_bank(data, source=path.name, expected_role=path.stem)


def load_personas(
    role: str, split: str | None = None, path: str | Path | None = None
) -> list[Persona]:
    """Validated personas of ``role``, optionally only one split.

    ``path`` may be a bank file or a directory holding ``<role>.json``;
    default: the bank shipped with the package.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    file = resolve(path, f"{role}.json")
    personas = validate_bank_file(file)
    if personas and personas[0].role != role:
        raise PersonaBankError(f"{file.name}: role: holds {personas[0].role!r}, asked for {role!r}")
    return [p for p in personas if split is None or p.split == split]


def load_all_personas(split: str | None = None, path: str | Path | None = None) -> list[Persona]:
    """Personas of every role, in ``ROLES`` order."""
    return [p for role in ROLES for p in load_personas(role, split=split, path=path)]


def description_shingles(text: str, n: int = 3) -> frozenset[tuple[str, ...]]:
    """Word n-grams of a description (lower-cased, punctuation dropped)."""
    words = _WORD.findall(text.casefold().replace("\u2019", "'"))
    if len(words) < n:
        return frozenset({tuple(words)}) if words else frozenset()
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[Any], b: frozenset[Any]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def near_duplicate_pairs(
    personas: Sequence[Persona], threshold: float = 0.5, n: int = 3
) -> list[tuple[str, str, float]]:
    """Pairs whose descriptions share at least ``threshold`` of their word
    ``n``-shingles (Jaccard), most similar first.

    Near-duplicates inflate the bank without adding diversity and, across the
    split, leak evaluation personas into training.
    """
    shingles = [(p.id, description_shingles(p.description, n)) for p in personas]
    pairs = [
        (id_a, id_b, score)
        for (id_a, sh_a), (id_b, sh_b) in combinations(shingles, 2)
        if (score := jaccard(sh_a, sh_b)) >= threshold
    ]
    return sorted(pairs, key=lambda pair: -pair[2])
