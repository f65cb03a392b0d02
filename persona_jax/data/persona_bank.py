"""Schema, loader and validator for the persona bank and the partner prompts.

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

``partners.json`` holds the simulated user's role prompt per role and the
partner side of each dialogue (therapist, teacher, chat partner).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

ROLES: tuple[str, ...] = ("patient", "student", "chat")
"""The simulated-user roles; each has one bank file ``<role>.json``."""

SPLITS: tuple[str, ...] = ("train", "eval")
SCHEMA_VERSION = 1
DATA_DIR = Path(__file__).resolve().parent / "personas"
"""Default location of the bank files, shipped as package data."""

PARTNER_OF: dict[str, str] = {"patient": "therapist", "student": "teacher", "chat": "chat_partner"}
"""Which partner (the non-simulated side of the dialogue) talks to each role."""

EVAL_EVERY = 4
DESCRIPTION_WORDS: tuple[int, int] = (60, 200)
MIN_PROBES = 5
OPTION_COUNTS: tuple[int, ...] = (4, 5)
AGE_RANGE: tuple[int, int] = (5, 100)
MIN_FIRST_PERSON_WORDS = 3
MIN_OPENING_LINES = 10
MIN_TEACHER_TOPICS = 30

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


class PersonaBankError(ValueError):
    """A bank or partner file breaks the schema.

    ``problems`` holds one line per problem (file: persona id: field: what is
    wrong) so that an author fixing 40 personas sees every mistake at once.
    """

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        super().__init__("\n".join(self.problems))


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


@dataclass(frozen=True)
class EducationTopic:
    """A lesson the teacher partner can open a dialogue with."""

    subject: str
    topic: str
    grade_level: str


@dataclass(frozen=True)
class PartnerSpec:
    """Both sides of the prompt setup for one role.

    Bundles the simulated user's role prompt (``user_prompt_template`` with a
    ``{persona}`` slot) with the partner that talks to it, so an environment
    needs a single lookup ``partners[persona.role]``.
    """

    role: str
    partner: str
    user_prompt_template: str
    brevity_reminder: str
    system_prompt: str
    opening_lines: tuple[str, ...]
    topics: tuple[EducationTopic, ...] = ()

    def render_system_prompt(self, *, subject: str | None = None, grade: str | None = None) -> str:
        """Partner system prompt; the teacher's needs ``subject`` and ``grade``."""
        needed = _placeholders(self.system_prompt) or set()
        given = {"subject": subject, "grade": grade}
        missing = sorted(k for k in needed if given.get(k) is None)
        if missing:
            raise ValueError(f"{self.partner} system prompt needs {', '.join(missing)}")
        return self.system_prompt.format(**{k: v for k, v in given.items() if k in needed})

    def render_opening_line(self, index: int, *, topic: str | None = None) -> str:
        """Partner's first line (``index`` wraps around); the teacher's needs ``topic``."""
        line = self.opening_lines[index % len(self.opening_lines)]
        if "topic" in (_placeholders(line) or set()):
            if topic is None:
                raise ValueError(f"{self.partner} opening line {index} needs a topic")
            return line.format(topic=topic)
        return line


# --------------------------------------------------------------------------- helpers


def _placeholders(text: str) -> set[str] | None:
    """Field names of a ``str.format`` template, or None if it is malformed
    (a stray brace would otherwise crash ``format`` at training time)."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        return None


def _type_name(value: Any) -> str:
    return type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_str(value: Any, loc: str, problems: list[str]) -> bool:
    if not isinstance(value, str):
        problems.append(f"{loc}: expected a string, got {_type_name(value)}")
        return False
    if not value.strip():
        problems.append(f"{loc}: must not be empty")
        return False
    return True


def _check_str_list(value: Any, loc: str, problems: list[str]) -> bool:
    if not isinstance(value, list):
        problems.append(f"{loc}: expected a list of strings, got {_type_name(value)}")
        return False
    if not value:
        problems.append(f"{loc}: must not be empty")
        return False
    return all([_check_str(item, f"{loc}[{k}]", problems) for k, item in enumerate(value)])


def _check_keys(
    obj: Mapping[str, Any], required: Sequence[str], loc: str, problems: list[str]
) -> None:
    """``loc`` is the prefix up to (not including) the key, e.g. ``f.json: id: facts.``."""
    for key in required:
        if key not in obj:
            problems.append(f"{loc}{key}: missing")
    for key in obj:
        if key not in required:
            problems.append(f"{loc}{key}: unknown field (expected one of {', '.join(required)})")


def _resolve(path: str | Path | None, filename: str) -> Path:
    if path is None:
        return DATA_DIR / filename
    path = Path(path)
    return path / filename if path.is_dir() else path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PersonaBankError(f"{path.name}: file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise PersonaBankError(
            f"{path.name}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from None


# --------------------------------------------------------------------------- personas


def required_facts(role: str) -> dict[str, str]:
    """Fact keys a persona of ``role`` must have, mapped to their kind."""
    return {**COMMON_FACTS, **ROLE_FACTS[role]}


def expected_split(number: int) -> str:
    """The split a persona number belongs to (see the module docstring)."""
    return "eval" if number % EVAL_EVERY == 0 else "train"


def _parse_facts(facts: Any, role: str, loc: str, problems: list[str]) -> bool:
    if not isinstance(facts, dict):
        problems.append(f"{loc}facts: expected an object, got {_type_name(facts)}")
        return False
    before = len(problems)
    kinds = required_facts(role)
    _check_keys(facts, tuple(kinds), f"{loc}facts.", problems)
    for key, kind in kinds.items():
        if key not in facts:
            continue
        value, where = facts[key], f"{loc}facts.{key}"
        if kind == "str":
            _check_str(value, where, problems)
        elif kind == "list":
            _check_str_list(value, where, problems)
        elif not _is_int(value):
            problems.append(f"{where}: expected an integer, got {_type_name(value)}")
        elif not AGE_RANGE[0] <= value <= AGE_RANGE[1]:
            problems.append(f"{where}: {value} is outside {AGE_RANGE[0]}..{AGE_RANGE[1]}")
    return len(problems) == before


def _parse_probe(raw: Any, loc: str, problems: list[str]) -> Probe | None:
    if not isinstance(raw, dict):
        problems.append(f"{loc}: expected an object, got {_type_name(raw)}")
        return None
    before = len(problems)
    _check_keys(raw, _PROBE_KEYS, f"{loc}.", problems)
    if "question" in raw:
        _check_str(raw["question"], f"{loc}.question", problems)
    options = raw.get("options")
    options_ok = "options" in raw and _check_str_list(options, f"{loc}.options", problems)
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
        if not _is_int(answer):
            problems.append(f"{loc}.answer: expected an integer, got {_type_name(answer)}")
        elif options_ok and not 0 <= answer < len(options):
            problems.append(
                f"{loc}.answer: {answer} is not an option index ({len(options)} options)"
            )
    if len(problems) != before:
        return None
    return Probe(question=raw["question"], options=tuple(options), answer=raw["answer"])


def _parse_probes(raw_probes: Any, loc: str, problems: list[str]) -> list[Probe]:
    if not isinstance(raw_probes, list):
        problems.append(f"{loc}probes: expected a list, got {_type_name(raw_probes)}")
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
    if not _check_str(description, f"{loc}description", problems):
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
        problems.append(f"{source}: personas[{index}]: expected an object, got {_type_name(raw)}")
        return None
    pid = raw.get("id")
    label = pid if isinstance(pid, str) and pid.strip() else f"personas[{index}]"
    loc = f"{source}: {label}: "
    before = len(problems)
    _check_keys(raw, _PERSONA_KEYS, loc, problems)

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
    if not isinstance(data, dict):
        raise PersonaBankError(f"{source}: expected a JSON object, got {_type_name(data)}")
    problems: list[str] = []
    _check_keys(data, _BANK_KEYS, f"{source}: ", problems)

    version = data.get("schema_version")
    if "schema_version" in data and (not _is_int(version) or version != SCHEMA_VERSION):
        problems.append(
            f"{source}: schema_version: {version!r}; this loader reads {SCHEMA_VERSION}"
        )

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
    data = _read_json(path)
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
    file = _resolve(path, f"{role}.json")
    personas = validate_bank_file(file)
    if personas and personas[0].role != role:
        raise PersonaBankError(f"{file.name}: role: holds {personas[0].role!r}, asked for {role!r}")
    return [p for p in personas if split is None or p.split == split]


def load_all_personas(split: str | None = None, path: str | Path | None = None) -> list[Persona]:
    """Personas of every role, in ``ROLES`` order."""
    return [p for role in ROLES for p in load_personas(role, split=split, path=path)]


# --------------------------------------------------------------------------- diversity


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


# --------------------------------------------------------------------------- partners


def _placeholder_check(text: str, expected: set[str], loc: str, problems: list[str]) -> None:
    found = _placeholders(text)
    if found is None:
        problems.append(f"{loc}: malformed braces; write literal braces as '{{{{' and '}}}}'")
    elif found != expected:
        want = ", ".join(f"{{{name}}}" for name in sorted(expected)) or "no placeholders"
        have = ", ".join(f"{{{name}}}" for name in sorted(found)) or "none"
        problems.append(f"{loc}: placeholders are {have}; expected {want}")


def _check_opening_lines(
    value: Any, expected: set[str], loc: str, problems: list[str]
) -> tuple[str, ...]:
    if not _check_str_list(value, loc, problems):
        return ()
    if len(value) < MIN_OPENING_LINES:
        problems.append(f"{loc}: has {len(value)}; need at least {MIN_OPENING_LINES}")
    seen: set[str] = set()
    for k, line in enumerate(value):
        _placeholder_check(line, expected, f"{loc}[{k}]", problems)
        if line in seen:
            problems.append(f"{loc}[{k}]: duplicate opening line")
        seen.add(line)
    return tuple(value)


def _check_topics(value: Any, loc: str, problems: list[str]) -> tuple[EducationTopic, ...]:
    if not isinstance(value, list):
        problems.append(f"{loc}: expected a list, got {_type_name(value)}")
        return ()
    if len(value) < MIN_TEACHER_TOPICS:
        problems.append(f"{loc}: has {len(value)}; need at least {MIN_TEACHER_TOPICS}")
    keys = ("subject", "topic", "grade_level")
    topics: list[EducationTopic] = []
    seen: set[tuple[str, str]] = set()
    for k, raw in enumerate(value):
        where = f"{loc}[{k}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: expected an object, got {_type_name(raw)}")
            continue
        before = len(problems)
        _check_keys(raw, keys, f"{where}.", problems)
        for key in keys:
            if key in raw:
                _check_str(raw[key], f"{where}.{key}", problems)
        if len(problems) != before:
            continue
        ident = (raw["subject"].casefold(), raw["topic"].casefold())
        if ident in seen:
            problems.append(f"{where}: duplicate topic {raw['subject']}/{raw['topic']}")
        seen.add(ident)
        topics.append(EducationTopic(raw["subject"], raw["topic"], raw["grade_level"]))
    return tuple(topics)


def parse_partners(data: Any, source: str = "<memory>") -> dict[str, PartnerSpec]:
    """Validate an already-decoded partners document; see :func:`load_partners`."""
    if not isinstance(data, dict):
        raise PersonaBankError(f"{source}: expected a JSON object, got {_type_name(data)}")
    problems: list[str] = []
    top = ("schema_version", "brevity_reminder", "simulated_user", *PARTNER_OF.values())
    _check_keys(data, top, f"{source}: ", problems)
    version = data.get("schema_version")
    if "schema_version" in data and (not _is_int(version) or version != SCHEMA_VERSION):
        problems.append(
            f"{source}: schema_version: {version!r}; this loader reads {SCHEMA_VERSION}"
        )
    reminder = data.get("brevity_reminder")
    if "brevity_reminder" in data and _check_str(reminder, f"{source}: brevity_reminder", problems):
        _placeholder_check(reminder, set(), f"{source}: brevity_reminder", problems)

    templates = data.get("simulated_user")
    if not isinstance(templates, dict):
        problems.append(f"{source}: simulated_user: expected an object keyed by role")
        templates = {}
    else:
        _check_keys(templates, ROLES, f"{source}: simulated_user.", problems)
    for role in ROLES:
        where = f"{source}: simulated_user.{role}"
        if role in templates and _check_str(templates[role], where, problems):
            _placeholder_check(templates[role], {"persona"}, where, problems)

    specs: dict[str, PartnerSpec] = {}
    for role, partner in PARTNER_OF.items():
        raw = data.get(partner)
        loc = f"{source}: {partner}"
        if not isinstance(raw, dict):
            if partner in data:
                problems.append(f"{loc}: expected an object, got {_type_name(raw)}")
            continue
        is_teacher = partner == "teacher"
        keys = ("system_prompt", "opening_lines", *(("topics",) if is_teacher else ()))
        _check_keys(raw, keys, f"{loc}.", problems)
        prompt = raw.get("system_prompt")
        if "system_prompt" in raw and _check_str(prompt, f"{loc}.system_prompt", problems):
            expected = {"subject", "grade"} if is_teacher else set()
            _placeholder_check(prompt, expected, f"{loc}.system_prompt", problems)
        lines: tuple[str, ...] = ()
        if "opening_lines" in raw:
            expected = {"topic"} if is_teacher else set()
            lines = _check_opening_lines(
                raw["opening_lines"], expected, f"{loc}.opening_lines", problems
            )
        topics: tuple[EducationTopic, ...] = ()
        if is_teacher and "topics" in raw:
            topics = _check_topics(raw["topics"], f"{loc}.topics", problems)
        if isinstance(prompt, str) and isinstance(templates.get(role), str):
            specs[role] = PartnerSpec(
                role=role,
                partner=partner,
                user_prompt_template=templates[role],
                brevity_reminder=reminder if isinstance(reminder, str) else "",
                system_prompt=prompt,
                opening_lines=lines,
                topics=topics,
            )
    if problems:
        raise PersonaBankError(problems)
    return specs


def load_partners(path: str | Path | None = None) -> dict[str, PartnerSpec]:
    """Validated partner specs keyed by role (``"patient"`` -> therapist, ...).

    ``path`` may be ``partners.json`` or the directory holding it.
    """
    file = _resolve(path, "partners.json")
    return parse_partners(_read_json(file), source=file.name)


def format_persona_prompt(
    persona: Persona, partners: Mapping[str, PartnerSpec], *, brevity_reminder: bool = True
) -> str:
    """The simulated user's system prompt: the role template filled with the
    persona's first-person description, plus the brevity reminder (long turns
    drift from the persona and crowd the partner's context)."""
    try:
        spec = partners[persona.role]
    except KeyError:
        raise KeyError(f"no partner spec for role {persona.role!r} ({persona.id})") from None
    text = spec.user_prompt_template.format(persona=persona.description.strip())
    if brevity_reminder and spec.brevity_reminder:
        text = f"{text}\n\n{spec.brevity_reminder}"
    return text
