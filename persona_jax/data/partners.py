"""The partner side of each dialogue and the simulated user's role prompts (``partners.json``).

One document holds, per role, the template that puts a persona's first-person description
into the simulated user's system prompt, and the partner that talks to it: the therapist,
the teacher (with the lessons it can open with) or the chat partner, each with its system
prompt and opening lines. Templates are ``str.format`` strings whose placeholders are
checked when the file is read, so a stray brace fails at load time, not mid-run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_jax.data.persona_bank import ROLES, Persona
from persona_jax.data.validation import (
    PersonaBankError,
    check_document,
    check_keys,
    check_str,
    check_str_list,
    placeholders,
    read_json,
    resolve,
    type_name,
)

PARTNER_OF: dict[str, str] = {"patient": "therapist", "student": "teacher", "chat": "chat_partner"}
"""Which partner (the non-simulated side of the dialogue) talks to each role."""

MIN_OPENING_LINES = 10
MIN_TEACHER_TOPICS = 30


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
        needed = placeholders(self.system_prompt) or set()
        given = {"subject": subject, "grade": grade}
        missing = sorted(k for k in needed if given.get(k) is None)
        if missing:
            raise ValueError(f"{self.partner} system prompt needs {', '.join(missing)}")
        return self.system_prompt.format(**{k: v for k, v in given.items() if k in needed})

    def render_opening_line(self, index: int, *, topic: str | None = None) -> str:
        """Partner's first line (``index`` wraps around); the teacher's needs ``topic``."""
        line = self.opening_lines[index % len(self.opening_lines)]
        if "topic" in (placeholders(line) or set()):
            if topic is None:
                raise ValueError(f"{self.partner} opening line {index} needs a topic")
            return line.format(topic=topic)
        return line


# --------------------------------------------------------------------------- helpers


def _placeholder_check(text: str, expected: set[str], loc: str, problems: list[str]) -> None:
    found = placeholders(text)
    if found is None:
        problems.append(f"{loc}: malformed braces; write literal braces as '{{{{' and '}}}}'")
    elif found != expected:
        want = ", ".join(f"{{{name}}}" for name in sorted(expected)) or "no placeholders"
        have = ", ".join(f"{{{name}}}" for name in sorted(found)) or "none"
        problems.append(f"{loc}: placeholders are {have}; expected {want}")


def _check_opening_lines(
    value: Any, expected: set[str], loc: str, problems: list[str]
) -> tuple[str, ...]:
    if not check_str_list(value, loc, problems):
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
        problems.append(f"{loc}: expected a list, got {type_name(value)}")
        return ()
    if len(value) < MIN_TEACHER_TOPICS:
        problems.append(f"{loc}: has {len(value)}; need at least {MIN_TEACHER_TOPICS}")
    keys = ("subject", "topic", "grade_level")
    topics: list[EducationTopic] = []
    seen: set[tuple[str, str]] = set()
    for k, raw in enumerate(value):
        where = f"{loc}[{k}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: expected an object, got {type_name(raw)}")
            continue
        before = len(problems)
        check_keys(raw, keys, f"{where}.", problems)
        for key in keys:
            if key in raw:
                check_str(raw[key], f"{where}.{key}", problems)
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
    top = ("schema_version", "brevity_reminder", "simulated_user", *PARTNER_OF.values())
    problems = check_document(data, top, source)
    reminder = data.get("brevity_reminder")
    if "brevity_reminder" in data and check_str(reminder, f"{source}: brevity_reminder", problems):
        _placeholder_check(reminder, set(), f"{source}: brevity_reminder", problems)

    templates = data.get("simulated_user")
    if not isinstance(templates, dict):
        problems.append(f"{source}: simulated_user: expected an object keyed by role")
        templates = {}
    else:
        check_keys(templates, ROLES, f"{source}: simulated_user.", problems)
    for role in ROLES:
        where = f"{source}: simulated_user.{role}"
        if role in templates and check_str(templates[role], where, problems):
            _placeholder_check(templates[role], {"persona"}, where, problems)

    specs: dict[str, PartnerSpec] = {}
    for role, partner in PARTNER_OF.items():
        raw = data.get(partner)
        loc = f"{source}: {partner}"
        if not isinstance(raw, dict):
            if partner in data:
                problems.append(f"{loc}: expected an object, got {type_name(raw)}")
            continue
        is_teacher = partner == "teacher"
        keys = ("system_prompt", "opening_lines", *(("topics",) if is_teacher else ()))
        check_keys(raw, keys, f"{loc}.", problems)
        prompt = raw.get("system_prompt")
        if "system_prompt" in raw and check_str(prompt, f"{loc}.system_prompt", problems):
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
    file = resolve(path, "partners.json")
    return parse_partners(read_json(file), source=file.name)


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
