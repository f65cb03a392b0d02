"""The built-in persona bank: schema, loader and validator.

The bank is data shipped inside the package, written for this project:

- ``personas/<role>.json``, one file per simulated-user role (``patient``, ``student``,
  ``chat``)::

      {"schema_version": 1, "role": "patient", "personas": [PERSONA, ...]}

  where each ``PERSONA`` is::

      {"id": "patient-001",             # "<role>-NNN", unique in the bank
       "text": "...",                   # 60-200 words, in the voice the user prompt expects
       "facts": {...},                  # structured facts, keys per role (ROLE_FACTS)
       "probes": [                      # >= 5 multiple-choice questions for Q&A consistency
         {"question": "...?", "options": ["...", ...],   # 4 or 5 distinct options
          "answer": "..."}]}            # the key: exactly one of the options, and
                                        # grounded in ``text`` (the words the model sees)

- ``partners.json``: the other side of each episode (therapist, teacher, chat partner):
  role prompts, the simulated user's own prompt template, opening lines, grade levels and
  education topics. Templates use ``{name}`` placeholders; which names each template may
  and must use is fixed in ``TEMPLATE_FIELDS``.

The eval split is not stored: per role, the ``round(n / 4)`` personas whose ids hash lowest
(``split_hash``) form it, so it is fixed by the ids alone. Adding personas to a role can move
one persona between splits, so a data set built from the bank must be rebuilt (new version)
when the bank grows.

Every problem is reported with its file, persona id and field; ``load_bank`` raises
``PersonaBankError`` listing all of them. ``python -m persona_jax.data.persona_bank``
validates the bank and prints its counts.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
import string
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
ROLES = ("patient", "student", "chat")
PARTNER_ROLES = {"patient": "therapist", "student": "teacher", "chat": "chat partner"}
SPLITS = ("train", "eval")
EVAL_FRACTION = 0.25

DEFAULT_ROOT = Path(__file__).resolve().parent
MIN_PERSONAS_PER_ROLE = 40
TEXT_WORDS = (60, 200)
MIN_PROBES = 5
PROBE_OPTIONS = (4, 5)
# Word-trigram Jaccard similarity of two persona texts above which they count as near-duplicates.
NEAR_DUPLICATE_JACCARD = 0.2

# Fact fields: name -> kind. "str": non-empty string; "list": non-empty list of non-empty
# strings; "age": int within AGE_RANGE[role]; "grade": one of partners.json's grade_levels.
COMMON_FACTS = {
    "name": "str",
    "age": "age",
    "family": "str",
    "history": "str",
    "beliefs": "list",
    "traits": "list",
    "speaking_style": "list",
    "avoids": "list",
}
ROLE_FACTS: dict[str, dict[str, str]] = {
    "patient": {**COMMON_FACTS, "occupation": "str", "concern": "str"},
    "student": {**COMMON_FACTS, "grade": "grade", "learning_style": "str"},
    "chat": {**COMMON_FACTS, "occupation": "str", "location": "str", "interests": "list"},
}
AGE_RANGE = {"patient": (18, 95), "student": (5, 30), "chat": (18, 95)}
FIRST_PERSON = re.compile(r"\b(i|i'm|i've|i'd|my|me)\b", re.IGNORECASE)

# Template kind -> (allowed placeholders, required placeholders).
TEMPLATE_FIELDS: dict[str, dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "patient": {
        "partner_prompts": (frozenset(), frozenset()),
        "user_prompt": (frozenset({"persona"}), frozenset({"persona"})),
        "openings": (frozenset(), frozenset()),
        "reminder": (frozenset(), frozenset()),
    },
    "student": {
        "partner_prompts": (
            frozenset({"subject", "topic", "grade"}),
            frozenset({"topic", "grade"}),
        ),
        "user_prompt": (
            frozenset({"persona", "subject", "topic", "grade"}),
            frozenset({"persona", "topic"}),
        ),
        "openings": (frozenset({"subject", "topic", "grade"}), frozenset()),
        "reminder": (frozenset(), frozenset()),
    },
    "chat": {
        "partner_prompts": (frozenset({"topic"}), frozenset()),
        "user_prompt": (frozenset({"persona", "topic"}), frozenset({"persona"})),
        "openings": (frozenset({"topic"}), frozenset()),
        "reminder": (frozenset(), frozenset()),
    },
}
MIN_PARTNER_PROMPTS = 3
MIN_OPENINGS = 5
MIN_EDUCATION_TOPICS = 30

_STOPWORD_TEXT = """
    a an the and or but of to in on at for with from by about as into over after before is
    are was were be been being am do does did have has had not no nor so than that this
    these those it its it's i me my mine we our you your he him his she her they them their
    what which who whom when where why how all any some most more very just only also too
    can could would should will shall may might must one ones than then there here out up"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


# --------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the bank: where it is and what is wrong."""

    file: str
    persona_id: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = [self.file]
        if self.persona_id:
            where.append(f"persona {self.persona_id}")
        if self.field:
            where.append(f"field {self.field}")
        return f"{': '.join(where)}: {self.message}"


class PersonaBankError(ValueError):
    """The bank is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = tuple(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"persona bank invalid ({len(self.problems)} problems):\n{shown}{more}")


# --------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Probe:
    question: str
    options: tuple[str, ...]
    answer: str

    @property
    def answer_index(self) -> int:
        return self.options.index(self.answer)

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "options": list(self.options), "answer": self.answer}


@dataclass(frozen=True, eq=False)
class Persona:
    id: str
    role: str
    text: str
    facts: Mapping[str, Any]
    probes: tuple[Probe, ...]
    split: str

    @property
    def name(self) -> str:
        return self.facts["name"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "split": self.split,
            "text": self.text,
            "facts": dict(self.facts),
            "probes": [p.to_dict() for p in self.probes],
        }


@dataclass(frozen=True)
class Topic:
    subject: str
    topic: str
    grade_levels: tuple[str, ...]


@dataclass(frozen=True)
class PartnerSpec:
    """The partner side of one simulated-user role."""

    role: str  # the simulated user's role: patient, student or chat
    partner_role: str  # therapist, teacher or chat partner
    partner_prompts: tuple[str, ...]
    user_prompt: str
    openings: tuple[str, ...]
    reminder: str
    topics: tuple[Topic, ...] = ()  # education topics (student); conversation themes (chat)


@dataclass(frozen=True)
class PersonaBank:
    personas: tuple[Persona, ...]
    partners: Mapping[str, PartnerSpec]
    grade_levels: tuple[str, ...]
    _by_id: Mapping[str, Persona] = field(repr=False, compare=False, default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "_by_id", {p.id: p for p in self.personas})

    def roles(self) -> tuple[str, ...]:
        return tuple(r for r in ROLES if any(p.role == r for p in self.personas))

    def select(self, role: str | None = None, split: str | None = None) -> tuple[Persona, ...]:
        """Personas of a role and/or split, in file order."""
        if role is not None and role not in ROLES:
            raise KeyError(f"unknown role {role!r}; roles are {ROLES}")
        if split is not None and split not in SPLITS:
            raise KeyError(f"unknown split {split!r}; splits are {SPLITS}")
        return tuple(
            p
            for p in self.personas
            if (role is None or p.role == role) and (split is None or p.split == split)
        )

    def get(self, persona_id: str) -> Persona:
        try:
            return self._by_id[persona_id]
        except KeyError:
            raise KeyError(f"no persona with id {persona_id!r} in the bank") from None


# --------------------------------------------------------------------------------------
# Helpers shared with the data pipelines


def split_hash(persona_id: str) -> str:
    return hashlib.sha256(f"persona_bank/{persona_id}".encode()).hexdigest()


def eval_ids(ids: Iterable[str], fraction: float = EVAL_FRACTION) -> frozenset[str]:
    """The fixed eval split of one role: the round(n * fraction) ids that hash lowest."""
    ids = sorted(set(ids), key=lambda i: (split_hash(i), i))
    n_eval = int(len(ids) * fraction + 0.5)
    return frozenset(ids[:n_eval])


def template_fields(template: str) -> set[str]:
    """The ``{name}`` placeholders a template uses."""
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


def fill(template: str, **values: str) -> str:
    """Fill a bank template; every placeholder it uses must be given."""
    missing = template_fields(template) - values.keys()
    if missing:
        raise KeyError(f"template needs {sorted(missing)}: {template[:80]!r}")
    return template.format(**values)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def shingles(text: str, n: int = 3) -> frozenset[tuple[str, ...]]:
    w = _words(text)
    return frozenset(tuple(w[i : i + n]) for i in range(max(len(w) - n + 1, 0)))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def near_duplicates(
    personas: Sequence[Persona], threshold: float = NEAR_DUPLICATE_JACCARD
) -> list[tuple[str, str, float]]:
    """Pairs (id, id, similarity) whose texts share more than ``threshold`` of trigrams."""
    sh = [(p.id, shingles(p.text)) for p in personas]
    out = []
    for (ia, a), (ib, b) in itertools.combinations(sh, 2):
        s = jaccard(a, b)
        if s > threshold:
            out.append((ia, ib, s))
    return out


def _content_words(text: str) -> set[str]:
    return {w for w in _words(text) if w not in _STOPWORDS and (len(w) >= 3 or w.isdigit())}


def grounded(answer: str, text: str) -> bool:
    """Whether an answer shares a content word (or a 5-letter stem) with a text."""
    source = _content_words(text)
    stems = {w[:5] for w in source if len(w) >= 5}
    return any(w in source or (len(w) >= 5 and w[:5] in stems) for w in _content_words(answer))


# --------------------------------------------------------------------------------------
# Validation


class _Checker:
    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []

    def add(self, persona_id: str | None, fld: str | None, message: str) -> None:
        self.problems.append(Problem(self.file, persona_id, fld, message))

    def string(self, pid, fld, value) -> bool:
        if not isinstance(value, str) or not value.strip():
            self.add(pid, fld, f"must be a non-empty string, got {value!r}")
            return False
        if value != value.strip():
            self.add(pid, fld, "has leading or trailing whitespace")
        return True

    def strings(self, pid, fld, value, min_len: int = 1) -> bool:
        if not isinstance(value, list) or len(value) < min_len:
            self.add(pid, fld, f"must be a list of at least {min_len} strings, got {value!r}")
            return False
        ok = all([self.string(pid, f"{fld}[{i}]", v) for i, v in enumerate(value)])
        lowered = [v.strip().lower() for v in value if isinstance(v, str)]
        if len(set(lowered)) != len(lowered):
            self.add(pid, fld, "has repeated entries")
            ok = False
        return ok

    def keys(self, pid, fld, obj, required: Iterable[str], optional: Iterable[str] = ()) -> bool:
        if not isinstance(obj, dict):
            self.add(pid, fld, f"must be an object, got {type(obj).__name__}")
            return False
        required = set(required)
        ok = True
        for k in sorted(required - obj.keys()):
            self.add(pid, f"{fld}.{k}" if fld else k, "is missing")
            ok = False
        for k in sorted(obj.keys() - required - set(optional)):
            self.add(pid, f"{fld}.{k}" if fld else k, "is not a known field")
            ok = False
        return ok

    def template(self, pid, fld, value, allowed, required) -> None:
        if not self.string(pid, fld, value):
            return
        try:
            used = template_fields(value)
        except ValueError as e:
            self.add(pid, fld, f"is not a valid template ({e}); write braces as {{{{ }}}}")
            return
        if used - allowed:
            self.add(pid, fld, f"uses unknown placeholders {sorted(used - allowed)}")
        if required - used:
            self.add(pid, fld, f"lacks required placeholders {sorted(required - used)}")


def _read_json(path: Path, chk: _Checker) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        chk.add(None, None, "file is missing")
    except UnicodeDecodeError as e:
        chk.add(None, None, f"is not UTF-8: {e}")
    except json.JSONDecodeError as e:
        chk.add(None, None, f"is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}")
    return None


def _check_persona(chk: _Checker, role: str, raw: Any, index: int, grades: set[str] | None):
    """Validates one persona; returns its id if the record is usable, else None."""
    if not isinstance(raw, dict):
        chk.add(f"#{index}", None, f"must be an object, got {type(raw).__name__}")
        return None
    pid = raw.get("id")
    if not isinstance(pid, str) or not re.fullmatch(rf"{role}-\d{{3}}", pid):
        chk.add(f"#{index}", "id", f"must look like '{role}-001', got {pid!r}")
        pid = f"#{index}"
    chk.keys(pid, None, raw, ("id", "text", "facts", "probes"))

    text = raw.get("text")
    if chk.string(pid, "text", text):
        n = len(text.split())
        if not TEXT_WORDS[0] <= n <= TEXT_WORDS[1]:
            chk.add(pid, "text", f"has {n} words; must have {TEXT_WORDS[0]} to {TEXT_WORDS[1]}")
        if not FIRST_PERSON.search(text):
            chk.add(pid, "text", "must be written in the first person (I, my, me)")
        if "{" in text or "%" in text:
            chk.add(pid, "text", "must not contain template markers ('{' or '%')")
    else:
        text = ""

    facts = raw.get("facts")
    spec = ROLE_FACTS[role]
    if chk.keys(pid, "facts", facts, spec) or isinstance(facts, dict):
        for k, kind in spec.items():
            if k not in facts:
                continue
            v, fld = facts[k], f"facts.{k}"
            if kind == "str":
                chk.string(pid, fld, v)
            elif kind == "list":
                chk.strings(pid, fld, v)
            elif kind == "age":
                lo, hi = AGE_RANGE[role]
                if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                    chk.add(pid, fld, f"must be an integer from {lo} to {hi}, got {v!r}")
            elif (
                kind == "grade" and chk.string(pid, fld, v) and grades is not None
            ) and v not in grades:
                chk.add(pid, fld, f"{v!r} is not one of partners.json grade_levels")
        name = facts.get("name")
        if isinstance(name, str) and name.strip() and text:
            first = name.split()[0].strip('"')
            if first.lower() not in text.lower():
                chk.add(pid, "facts.name", f"first name {first!r} does not appear in text")

    probes = raw.get("probes")
    if not isinstance(probes, list) or len(probes) < MIN_PROBES:
        chk.add(pid, "probes", f"must be a list of at least {MIN_PROBES} probes")
        probes = probes if isinstance(probes, list) else []
    questions = set()
    for j, pr in enumerate(probes):
        fld = f"probes[{j}]"
        if not chk.keys(pid, fld, pr, ("question", "options", "answer")):
            continue
        q, opts, ans = pr["question"], pr["options"], pr["answer"]
        if chk.string(pid, f"{fld}.question", q):
            if not q.endswith("?"):
                chk.add(pid, f"{fld}.question", "must end with '?'")
            if q.lower() in questions:
                chk.add(pid, f"{fld}.question", "repeats an earlier question of this persona")
            questions.add(q.lower())
        opts_ok = chk.strings(pid, f"{fld}.options", opts)
        if opts_ok and len(opts) not in PROBE_OPTIONS:
            chk.add(pid, f"{fld}.options", f"has {len(opts)} options; must have 4 or 5")
        if chk.string(pid, f"{fld}.answer", ans) and opts_ok:
            if opts.count(ans) != 1:
                chk.add(pid, f"{fld}.answer", f"{ans!r} is not exactly one of the options")
            elif text and not grounded(ans, text):
                chk.add(
                    pid, f"{fld}.answer", f"{ans!r} shares no content word with the persona text"
                )
    return pid if not pid.startswith("#") else None


def _parse_persona(role: str, raw: dict, split: str) -> Persona:
    return Persona(
        id=raw["id"],
        role=role,
        text=raw["text"],
        facts=dict(raw["facts"]),
        probes=tuple(Probe(p["question"], tuple(p["options"]), p["answer"]) for p in raw["probes"]),
        split=split,
    )


def _check_persona_file(path: Path, role: str, grades: set[str] | None):
    """Returns (problems, raw persona dicts that passed)."""
    chk = _Checker(path.name if path.parent.name != "personas" else f"personas/{path.name}")
    data = _read_json(path, chk)
    if data is None:
        return chk.problems, []
    if not chk.keys(None, None, data, ("schema_version", "role", "personas")):
        return chk.problems, []
    if data["schema_version"] != SCHEMA_VERSION:
        chk.add(None, "schema_version", f"is {data['schema_version']!r}; expected {SCHEMA_VERSION}")
    if data["role"] != role:
        chk.add(None, "role", f"is {data['role']!r}, but the file is named for role {role!r}")
    if not isinstance(data["personas"], list):
        chk.add(None, "personas", "must be a list")
        return chk.problems, []
    good, ids = [], []
    for i, raw in enumerate(data["personas"]):
        before = len(chk.problems)
        pid = _check_persona(chk, role, raw, i, grades)
        if pid is not None:
            ids.append(pid)
            if len(chk.problems) == before:
                good.append(raw)
    if len(data["personas"]) < MIN_PERSONAS_PER_ROLE:
        chk.add(
            None,
            "personas",
            f"has {len(data['personas'])} personas; role {role} needs at least "
            f"{MIN_PERSONAS_PER_ROLE}",
        )
    for pid in sorted({i for i in ids if ids.count(i) > 1}):
        chk.add(pid, "id", "is used by more than one persona")
    names = [r["facts"]["name"].lower() for r in good]
    for r in good:
        if names.count(r["facts"]["name"].lower()) > 1:
            chk.add(r["id"], "facts.name", f"{r['facts']['name']!r} is used by another persona")
    return chk.problems, good


def _check_partners(path: Path):
    """Returns (problems, PartnerSpecs by role, grade levels)."""
    chk = _Checker(path.name)
    data = _read_json(path, chk)
    if data is None or not chk.keys(None, None, data, ("schema_version", "grade_levels", "roles")):
        return chk.problems, {}, ()
    if data["schema_version"] != SCHEMA_VERSION:
        chk.add(None, "schema_version", f"is {data['schema_version']!r}; expected {SCHEMA_VERSION}")
    grades = data["grade_levels"]
    if not chk.strings(None, "grade_levels", grades):
        grades = []
    specs = {}
    if not chk.keys(None, "roles", data["roles"], ROLES):
        return chk.problems, specs, tuple(grades)
    for role in ROLES:
        raw = data["roles"][role]
        where = f"roles.{role}"
        optional = ("topics",) if role == "chat" else ()
        required = ["partner_role", *TEMPLATE_FIELDS[role]]
        required += ["topics"] if role == "student" else []
        before = len(chk.problems)
        if not chk.keys(None, where, raw, required, optional):
            continue
        if raw["partner_role"] != PARTNER_ROLES[role]:
            chk.add(
                None,
                f"{where}.partner_role",
                f"is {raw['partner_role']!r}; expected {PARTNER_ROLES[role]!r}",
            )
        for kind, (allowed, needed) in TEMPLATE_FIELDS[role].items():
            fld = f"{where}.{kind}"
            if kind in ("partner_prompts", "openings"):
                least = MIN_PARTNER_PROMPTS if kind == "partner_prompts" else MIN_OPENINGS
                if chk.strings(None, fld, raw[kind], least):
                    for i, t in enumerate(raw[kind]):
                        chk.template(None, f"{fld}[{i}]", t, allowed, needed)
            else:
                chk.template(None, fld, raw[kind], allowed, needed)
        topics = []
        if role == "student":
            ts = raw["topics"]
            if not isinstance(ts, list) or len(ts) < MIN_EDUCATION_TOPICS:
                chk.add(None, f"{where}.topics", f"needs at least {MIN_EDUCATION_TOPICS} topics")
                ts = ts if isinstance(ts, list) else []
            for i, t in enumerate(ts):
                fld = f"{where}.topics[{i}]"
                if not chk.keys(None, fld, t, ("subject", "topic", "grade_levels")):
                    continue
                ok = chk.string(None, f"{fld}.subject", t["subject"])
                ok &= chk.string(None, f"{fld}.topic", t["topic"])
                if chk.strings(None, f"{fld}.grade_levels", t["grade_levels"]):
                    for g in t["grade_levels"]:
                        if g not in grades:
                            chk.add(None, f"{fld}.grade_levels", f"{g!r} is not in grade_levels")
                            ok = False
                    if ok:
                        topics.append(Topic(t["subject"], t["topic"], tuple(t["grade_levels"])))
            seen = [(t.subject.lower(), t.topic.lower()) for t in topics]
            if len(set(seen)) != len(seen):
                chk.add(None, f"{where}.topics", "has repeated (subject, topic) pairs")
        elif "topics" in raw and chk.strings(None, f"{where}.topics", raw["topics"]):
            topics = [Topic("conversation", t, ()) for t in raw["topics"]]
        if len(chk.problems) == before:
            specs[role] = PartnerSpec(
                role=role,
                partner_role=raw["partner_role"],
                partner_prompts=tuple(raw["partner_prompts"]),
                user_prompt=raw["user_prompt"],
                openings=tuple(raw["openings"]),
                reminder=raw["reminder"],
                topics=tuple(topics),
            )
    return chk.problems, specs, tuple(grades)


def check_bank(root: Path | str = DEFAULT_ROOT) -> tuple[list[Problem], PersonaBank]:
    """Validates the bank under ``root``; returns every problem and what could be loaded."""
    root = Path(root)
    problems, partners, grades = _check_partners(root / "partners.json")
    personas: list[Persona] = []
    persona_dir = root / "personas"
    known = {f"{r}.json" for r in ROLES}
    if persona_dir.is_dir():
        for path in sorted(persona_dir.glob("*.json")):
            if path.name not in known:
                msg = f"is not a role file {sorted(known)}"
                problems.append(Problem(f"personas/{path.name}", None, None, msg))
    for role in ROLES:
        file_problems, good = _check_persona_file(
            persona_dir / f"{role}.json", role, set(grades) if grades else None
        )
        problems += file_problems
        evals = eval_ids(r["id"] for r in good)
        personas += [_parse_persona(role, r, "eval" if r["id"] in evals else "train") for r in good]
    ids = [p.id for p in personas]
    for p in personas:
        if ids.count(p.id) > 1:  # only possible across files if a role prefix is reused
            problems.append(Problem(f"personas/{p.role}.json", p.id, "id", "is not unique"))
    for a, b, s in near_duplicates(personas):
        pa = next(p for p in personas if p.id == a)
        problems.append(
            Problem(
                f"personas/{pa.role}.json",
                a,
                "text",
                f"is a near-duplicate of {b} (trigram Jaccard {s:.2f} > {NEAR_DUPLICATE_JACCARD})",
            )
        )
    return problems, PersonaBank(tuple(personas), partners, grades)


def load_bank(root: Path | str | None = None) -> PersonaBank:
    """Loads and validates the bank; raises ``PersonaBankError`` on any problem.

    The built-in bank (``root=None``) is loaded once per process.
    """
    if root is None:
        return _load_default()
    problems, bank = check_bank(root)
    if problems:
        raise PersonaBankError(problems)
    return bank


@functools.cache
def _load_default() -> PersonaBank:
    return load_bank(DEFAULT_ROOT)


def summary(bank: PersonaBank) -> dict[str, Any]:
    return {
        role: {
            "personas": len(bank.select(role)),
            "train": len(bank.select(role, "train")),
            "eval": len(bank.select(role, "eval")),
            "probes": sum(len(p.probes) for p in bank.select(role)),
            "topics": len(bank.partners[role].topics) if role in bank.partners else 0,
        }
        for role in ROLES
    }


def main(argv: Sequence[str] | None = None) -> int:
    root = Path(argv[0]) if argv else DEFAULT_ROOT
    problems, bank = check_bank(root)
    print(json.dumps(summary(bank), indent=2))
    for p in problems:
        print(f"PROBLEM {p}", file=sys.stderr)
    print(f"{len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
