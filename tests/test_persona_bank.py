"""Tests for the persona bank: the shipped data and the validator's error messages."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from persona_jax.data.partners import format_persona_prompt, load_partners
from persona_jax.data.persona_bank import (
    EVAL_EVERY,
    ROLES,
    Persona,
    PersonaBankError,
    load_personas,
    near_duplicate_pairs,
    parse_bank,
    required_facts,
    validate_bank_file,
)
from persona_jax.data.validation import DATA_DIR

MIN_PERSONAS = 40
NEAR_DUPLICATE_JACCARD = 0.5


def _bank_personas() -> list[Persona]:
    return [p for role in ROLES for p in validate_bank_file(DATA_DIR / f"{role}.json")]


# --------------------------------------------------------------------------- shipped bank


@pytest.mark.parametrize("role", ROLES)
def test_role_file_validates(role: str) -> None:
    personas = validate_bank_file(DATA_DIR / f"{role}.json")
    assert all(p.role == role for p in personas)


@pytest.mark.parametrize("role", ROLES)
def test_role_size_and_split(role: str) -> None:
    personas = load_personas(role)
    assert len(personas) >= MIN_PERSONAS
    eval_personas = load_personas(role, split="eval")
    train_personas = load_personas(role, split="train")
    assert len(eval_personas) * EVAL_EVERY == len(personas)
    assert len(train_personas) + len(eval_personas) == len(personas)
    assert all(p.number % EVAL_EVERY == 0 for p in eval_personas)
    assert all(p.number % EVAL_EVERY != 0 for p in train_personas)


@pytest.mark.parametrize("role", ROLES)
def test_every_key_is_one_of_its_options(role: str) -> None:
    positions: Counter[int] = Counter()
    for persona in load_personas(role):
        for probe in persona.probes:
            assert 0 <= probe.answer < len(probe.options), (persona.id, probe.question)
            assert probe.keyed_option in probe.options
            positions[probe.answer] += 1
    # A bank whose keys sit mostly in one slot rewards position bias, not consistency.
    total = sum(positions.values())
    assert max(positions.values()) <= 0.4 * total, positions


@pytest.mark.parametrize("role", ROLES)
def test_facts_have_role_fields(role: str) -> None:
    for persona in load_personas(role):
        assert set(persona.facts) == set(required_facts(role)), persona.id


def test_ids_unique_across_roles() -> None:
    ids = [p.id for p in _bank_personas()]
    assert len(ids) == len(set(ids))


def test_names_unique_across_roles() -> None:
    names = Counter(p.name.casefold() for p in _bank_personas())
    assert [name for name, count in names.items() if count > 1] == []


def test_no_near_duplicate_descriptions() -> None:
    assert near_duplicate_pairs(_bank_personas(), NEAR_DUPLICATE_JACCARD) == []


def test_patients_are_diverse() -> None:
    patients = load_personas("patient")
    ages = [p.facts["age"] for p in patients]
    assert min(ages) <= 25 and max(ages) >= 70
    occupations = {p.facts["occupation"].casefold() for p in patients}
    concerns = {p.facts["presenting_concern"].casefold() for p in patients}
    assert len(occupations) == len(patients)
    assert len(concerns) == len(patients)


def test_partners_cover_every_role() -> None:
    partners = load_partners()
    assert set(partners) == set(ROLES)
    assert {spec.partner for spec in partners.values()} == {"therapist", "teacher", "chat_partner"}
    for spec in partners.values():
        assert len(spec.opening_lines) >= 10
    assert len(partners["student"].topics) >= 30


def test_format_persona_prompt_fills_template() -> None:
    partners = load_partners()
    persona = load_personas("patient")[0]
    prompt = format_persona_prompt(persona, partners)
    assert persona.description.strip() in prompt
    assert "{persona}" not in prompt
    assert prompt.endswith(partners["patient"].brevity_reminder)
    bare = format_persona_prompt(persona, partners, brevity_reminder=False)
    assert partners["patient"].brevity_reminder not in bare


def test_teacher_prompt_needs_subject_grade_and_topic() -> None:
    teacher = load_partners()["student"]
    topic = teacher.topics[0]
    prompt = teacher.render_system_prompt(subject=topic.subject, grade="7th grade")
    assert topic.subject in prompt and "7th grade" in prompt
    assert topic.topic in teacher.render_opening_line(0, topic=topic.topic)
    with pytest.raises(ValueError, match="grade"):
        teacher.render_system_prompt(subject=topic.subject)
    with pytest.raises(ValueError, match="topic"):
        teacher.render_opening_line(0)


# --------------------------------------------------------------------------- validator

_FIRST_NAMES = ["Ada", "Bruno", "Chiara", "Dmitri", "Eun", "Farid", "Greta", "Hugo"]


def _fact_value(kind: str, key: str) -> Any:
    return {"str": f"some {key}", "list": [f"one {key}", f"two {key}"], "int": 30}[kind]


def _persona(role: str, number: int) -> dict[str, Any]:
    first = _FIRST_NAMES[(number - 1) % len(_FIRST_NAMES)]
    facts = {key: _fact_value(kind, key) for key, kind in required_facts(role).items()}
    facts["name"] = f"{first} Example{number}"
    filler = " ".join(f"detail{number}x{k}" for k in range(60))
    return {
        "id": f"{role}-{number:03d}",
        "split": "eval" if number % EVAL_EVERY == 0 else "train",
        "description": f"I'm {first}, and my notes about myself follow: {filler}.",
        "facts": facts,
        "probes": [
            {
                "question": f"Question {j} about {first}?",
                "options": ["alpha", "beta", "gamma", "delta"],
                "answer": j % 4,
            }
            for j in range(5)
        ],
    }


def _bank(role: str = "patient", count: int = 4) -> dict[str, Any]:
    return {
        "role": role,
        "schema_version": 1,
        "personas": [_persona(role, n) for n in range(1, count + 1)],
    }


def _write(tmp_path: Path, data: dict[str, Any], name: str = "patient.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _problems(path: Path) -> tuple[str, ...]:
    with pytest.raises(PersonaBankError) as err:
        validate_bank_file(path)
    return err.value.problems


@pytest.mark.parametrize("role", ROLES)
def test_valid_fixture_bank_passes(tmp_path: Path, role: str) -> None:
    # Guards the error tests below: each breaks exactly one thing in this bank.
    personas = validate_bank_file(_write(tmp_path, _bank(role), f"{role}.json"))
    assert [p.split for p in personas] == ["train", "train", "train", "eval"]


def test_bad_answer_index_is_named(tmp_path: Path) -> None:
    data = _bank(count=12)
    data["personas"][11]["probes"][3]["answer"] = 5
    problems = _problems(_write(tmp_path, data))
    assert problems == (
        "patient.json: patient-012: probes[3].answer: 5 is not an option index (4 options)",
    )


def test_missing_fact_is_named(tmp_path: Path) -> None:
    data = _bank()
    del data["personas"][0]["facts"]["presenting_concern"]
    assert _problems(_write(tmp_path, data)) == (
        "patient.json: patient-001: facts.presenting_concern: missing",
    )


def test_wrong_fact_type_is_named(tmp_path: Path) -> None:
    data = _bank()
    data["personas"][1]["facts"]["age"] = "forty"
    data["personas"][2]["facts"]["beliefs"] = "a single string"
    problems = _problems(_write(tmp_path, data))
    assert "patient.json: patient-002: facts.age: expected an integer, got str" in problems
    assert any(
        p.startswith("patient.json: patient-003: facts.beliefs: expected a list") for p in problems
    )


def test_wrong_split_is_named(tmp_path: Path) -> None:
    data = _bank()
    data["personas"][3]["split"] = "train"
    problems = _problems(_write(tmp_path, data))
    assert any(
        p.startswith("patient.json: patient-004: split: 'train' but must be 'eval'")
        for p in problems
    )
    assert any(p.startswith("patient.json: split: 0 of 4 personas are eval") for p in problems)


def test_duplicate_id_is_named(tmp_path: Path) -> None:
    data = _bank()
    data["personas"][2]["id"] = "patient-002"
    problems = _problems(_write(tmp_path, data))
    assert "patient.json: patient-002: id: duplicate (personas[1] and personas[2])" in problems


def test_bad_id_format_is_named(tmp_path: Path) -> None:
    data = _bank()
    data["personas"][0]["id"] = "student-001"
    problems = _problems(_write(tmp_path, data))
    assert any(
        p.startswith("patient.json: student-001: id: 'student-001' is not") for p in problems
    )


def test_short_description_is_named(tmp_path: Path) -> None:
    data = _bank()
    data["personas"][2]["description"] = "I'm Chiara and my life is mine."
    assert _problems(_write(tmp_path, data)) == (
        "patient.json: patient-003: description: 7 words; need 60..200",
    )


def test_third_person_description_is_rejected(tmp_path: Path) -> None:
    data = _bank()
    text = data["personas"][0]["description"].replace("I'm Ada, and my notes about myself", "Ada")
    data["personas"][0]["description"] = text
    problems = _problems(_write(tmp_path, data))
    assert any(
        p.startswith("patient.json: patient-001: description: not written in the first")
        for p in problems
    )


def test_description_must_name_the_persona(tmp_path: Path) -> None:
    data = _bank()
    data["personas"][1]["facts"]["name"] = "Zora Example2"
    problems = _problems(_write(tmp_path, data))
    assert any(
        p.startswith("patient.json: patient-002: description: does not mention") for p in problems
    )


def test_probe_problems_are_named(tmp_path: Path) -> None:
    data = _bank()
    data["personas"][0]["probes"][1]["options"] = ["same", "Same ", "other", "more"]
    data["personas"][1]["probes"][0]["options"] = ["one", "two", "three"]
    data["personas"][1]["probes"][0]["answer"] = 0
    data["personas"][2]["probes"] = data["personas"][2]["probes"][:4]
    for probe in data["personas"][3]["probes"]:
        probe["answer"] = 2
    problems = _problems(_write(tmp_path, data))
    assert "patient.json: patient-001: probes[1].options[1]: duplicates options[0]" in problems
    assert "patient.json: patient-002: probes[0].options: has 3 options; need 4 or 5" in problems
    assert "patient.json: patient-003: probes: has 4; need at least 5" in problems
    assert any(
        p.startswith("patient.json: patient-004: probes: every answer is index 2") for p in problems
    )


def test_unknown_field_and_bad_version_are_named(tmp_path: Path) -> None:
    data = _bank()
    data["schema_version"] = 2
    data["personas"][0]["facts"]["grade"] = "8th grade"
    problems = _problems(_write(tmp_path, data))
    assert "patient.json: schema_version: 2; this loader reads 1" in problems
    assert any(
        p.startswith("patient.json: patient-001: facts.grade: unknown field") for p in problems
    )


def test_role_must_match_file(tmp_path: Path) -> None:
    problems = _problems(_write(tmp_path, _bank("student"), "patient.json"))
    assert "patient.json: role: 'student' but this file holds 'patient' personas" in problems


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    data = _bank()
    data["personas"][0]["probes"][0]["answer"] = 9
    data["personas"][3]["description"] = "I'm Dmitri, my bio, I guess."
    problems = _problems(_write(tmp_path, data))
    assert len(problems) == 2
    assert problems[0].startswith("patient.json: patient-001: probes[0].answer")
    assert problems[1].startswith("patient.json: patient-004: description")


def test_load_personas_from_directory_filters_split(tmp_path: Path) -> None:
    _write(tmp_path, _bank("chat", count=8), "chat.json")
    eval_ids = [p.id for p in load_personas("chat", split="eval", path=tmp_path)]
    assert eval_ids == ["chat-004", "chat-008"]
    with pytest.raises(ValueError, match="unknown split"):
        load_personas("chat", split="test", path=tmp_path)


def test_near_duplicates_are_detected() -> None:
    base = parse_bank(_bank(count=4), source="memory", expected_role="patient")
    twin_raw = copy.deepcopy(_persona("patient", 1))
    twin_raw["description"] = twin_raw["description"].replace("detail1x30", "something")
    twin = Persona(
        id="patient-099",
        role="patient",
        split="train",
        description=twin_raw["description"],
        facts=twin_raw["facts"],
        probes=(),
    )
    pairs = near_duplicate_pairs([*base, twin], threshold=NEAR_DUPLICATE_JACCARD)
    assert [(a, b) for a, b, _ in pairs] == [("patient-001", "patient-099")]
    assert 0.8 < pairs[0][2] < 1.0
    assert near_duplicate_pairs(base, threshold=NEAR_DUPLICATE_JACCARD) == []


def test_partner_template_errors_are_named(tmp_path: Path) -> None:
    data = json.loads((DATA_DIR / "partners.json").read_text(encoding="utf-8"))
    data["simulated_user"]["chat"] = "Be this person: {persona_text}"
    data["teacher"]["opening_lines"][2] = "Today: {subject}"
    data["therapist"]["opening_lines"] = data["therapist"]["opening_lines"][:3]
    path = tmp_path / "partners.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PersonaBankError) as err:
        load_partners(path)
    problems = err.value.problems
    assert (
        "partners.json: simulated_user.chat: placeholders are {persona_text}; expected {persona}"
        in problems
    )
    assert (
        "partners.json: teacher.opening_lines[2]: placeholders are {subject}; expected {topic}"
        in problems
    )
    assert "partners.json: therapist.opening_lines: has 3; need at least 10" in problems
