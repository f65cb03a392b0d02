"""Strict checks shared by the hand-written JSON files of the persona bank and the partners.

Every reward, evaluation split and Q&A score downstream is computed from these files, so a
malformed entry must stop a run before it starts rather than corrupt it silently. The
loaders collect every problem of a file into one :class:`PersonaBankError` whose lines each
name the file, the entry and the field.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
"""The ``schema_version`` the loaders read (both the bank and the partner file carry one)."""
DATA_DIR = Path(__file__).resolve().parent / "personas"
"""Default location of the bank and partner files, shipped as package data."""


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


def placeholders(text: str) -> set[str] | None:
    """Field names of a ``str.format`` template, or None if it is malformed
    (a stray brace would otherwise crash ``format`` at training time)."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        return None


def type_name(value: Any) -> str:
    return type(value).__name__


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_str(value: Any, loc: str, problems: list[str]) -> bool:
    if not isinstance(value, str):
        problems.append(f"{loc}: expected a string, got {type_name(value)}")
        return False
    if not value.strip():
        problems.append(f"{loc}: must not be empty")
        return False
    return True


def check_str_list(value: Any, loc: str, problems: list[str]) -> bool:
    if not isinstance(value, list):
        problems.append(f"{loc}: expected a list of strings, got {type_name(value)}")
        return False
    if not value:
        problems.append(f"{loc}: must not be empty")
        return False
    return all([check_str(item, f"{loc}[{k}]", problems) for k, item in enumerate(value)])


def check_keys(
    obj: Mapping[str, Any], required: Sequence[str], loc: str, problems: list[str]
) -> None:
    """``loc`` is the prefix up to (not including) the key, e.g. ``f.json: id: facts.``."""
    for key in required:
        if key not in obj:
            problems.append(f"{loc}{key}: missing")
    for key in obj:
        if key not in required:
            problems.append(f"{loc}{key}: unknown field (expected one of {', '.join(required)})")


def resolve(path: str | Path | None, filename: str) -> Path:
    if path is None:
        return DATA_DIR / filename
    path = Path(path)
    return path / filename if path.is_dir() else path


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PersonaBankError(f"{path.name}: file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise PersonaBankError(
            f"{path.name}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from None


def check_document(data: Any, keys: Sequence[str], source: str) -> list[str]:
    """The problems of a file's top level: its keys and its ``schema_version``.

    Raises at once when the document is not an object (nothing below it can be checked);
    otherwise returns the list that the caller's field checks go on appending to.
    """
    if not isinstance(data, dict):
        raise PersonaBankError(f"{source}: expected a JSON object, got {type_name(data)}")
    problems: list[str] = []
    check_keys(data, keys, f"{source}: ", problems)
    version = data.get("schema_version")
    if "schema_version" in data and (not is_int(version) or version != SCHEMA_VERSION):
        problems.append(
            f"{source}: schema_version: {version!r}; this loader reads {SCHEMA_VERSION}"
        )
    return problems
