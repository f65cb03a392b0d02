"""Reading a judge's free-text output as a verdict.

The judge (an LLM) writes a short reason and then its answer, and does not always follow
the requested format: ``YES.``, ``**NO**``, ``Answer: NO, the line aligns``, a reason that
quotes the question (``YES or NO: NO``), an index list written ``[3,5]`` or ``[ 3 ]`` or
repeated after the reason. Labels and rewards built from these outputs must not invent
answers, so the strict parsers here return ``None`` when the output does not settle the
question; callers exclude and count those outputs.

The ``release_*`` functions are different on purpose: they reproduce how the released
data's stored scores were computed (substring tests and the first bracket on a line), so
that the stored scores can be audited. They are lenient where the strict parsers refuse,
and must not be used to make labels.
"""

from __future__ import annotations

import ast
import re
from typing import Literal

Polarity = Literal["yes_inconsistent", "yes_consistent"]
POLARITIES: tuple[Polarity, ...] = ("yes_inconsistent", "yes_consistent")

# Upper case only: reasons use "no" and "yes" as ordinary words ("no clear conflict"),
# while every verdict in the released outputs is written in capitals.
_VERDICT_WORD = re.compile(r"\b(YES|NO)\b")
# The judge sometimes repeats the question's "YES or NO" before answering it.
_QUESTION_ECHO = re.compile(r"\b(?:YES\s*(?:or|OR|/)\s*NO|NO\s*(?:or|OR|/)\s*YES)\b")
# What may follow a final verdict: punctuation, spaces and at most one parenthetical
# remark, e.g. "NO (however, note the ambiguity ...)".
_VERDICT_TRAILER = re.compile(r"[^\w(]*(?:\([^()]*\))?[^\w]*")

_BRACKETED = re.compile(r"\[([^\[\]]*)\]")
_INT_LIST_BODY = re.compile(r"\s*(?:\d+\s*(?:,\s*\d+\s*)*,?\s*)?")
# The release took the first "[...]" on one line (no newline inside) and evaluated it.
_RELEASE_FIRST_BRACKET = re.compile(r"\[.*?\]")


def parse_yes_no(text: str) -> bool | None:
    """The judge's final YES/NO verdict: True for YES, False for NO, None if unsettled.

    Only capitalised ``YES``/``NO`` words count as verdicts. When every such word agrees
    the verdict is that word. When both occur, the last one is taken only if it ends the
    output (nothing after it but punctuation and one parenthetical remark); otherwise the
    output is ambiguous (e.g. a judge that went on to judge invented lines) and None is
    returned rather than a guess. An output with no verdict word is None.
    """
    cleaned = _QUESTION_ECHO.sub(" ", text)
    words = list(_VERDICT_WORD.finditer(cleaned))
    if not words:
        return None
    kinds = {m.group(1) for m in words}
    if len(kinds) == 1:
        return kinds.pop() == "YES"
    last = words[-1]
    if _VERDICT_TRAILER.fullmatch(cleaned, last.end()) is None:
        return None
    return last.group(1) == "YES"


def parse_index_list(text: str) -> list[int] | None:
    """The Python-style list of line indices in a judge's output, or None if unsettled.

    Every bracketed run of non-negative integers (``[]``, ``[ ]``, ``[3,5]``, ``[3, 5]``)
    anywhere in the text is a candidate; brackets holding anything else (``[2 is not an
    index ...]``) are ignored. One distinct candidate, however often repeated, is the
    answer. No candidate, or candidates that disagree (a list in the reason and a revised
    list after it), give None.
    """
    candidates: list[list[int]] = []
    for match in _BRACKETED.finditer(text):
        body = match.group(1)
        if _INT_LIST_BODY.fullmatch(body) is None:
            continue
        values = [int(part) for part in body.split(",") if part.strip()]
        if values not in candidates:
            candidates.append(values)
    if len(candidates) != 1:
        return None
    return candidates[0]


def inconsistent_from_yes(yes: bool | None, polarity: Polarity) -> bool | None:
    """Turn a parsed YES/NO into "the line is inconsistent", given the file's polarity."""
    if yes is None:
        return None
    if polarity == "yes_inconsistent":
        return yes
    if polarity == "yes_consistent":
        return not yes
    raise ValueError(f"unknown polarity {polarity!r}; expected one of {POLARITIES}")


def release_inconsistent(text: str, polarity: Polarity) -> bool:
    """How the release scored a prompt-to-line output: by a substring test.

    A line counted as inconsistent when the word meaning "inconsistent" (``YES`` or ``NO``
    by polarity) occurred anywhere in the output, even inside another word or a reason;
    an output without it (including one with no verdict at all) counted as consistent.
    """
    word = "YES" if polarity == "yes_inconsistent" else "NO"
    if polarity not in POLARITIES:
        raise ValueError(f"unknown polarity {polarity!r}; expected one of {POLARITIES}")
    return word in text


def release_index_list(text: str) -> list[int]:
    """How the release read a line-to-line output: the first ``[...]`` on one line.

    The bracket was evaluated as a Python literal; anything that failed to evaluate, and an
    output with no bracket, counted as an empty list (no conflicts).
    """
    match = _RELEASE_FIRST_BRACKET.search(text)
    if match is None:
        return []
    try:
        value = ast.literal_eval(match.group())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return []
    if not isinstance(value, list):
        return []
    return [j for j in value if isinstance(j, int) and not isinstance(j, bool)]


def release_probe_correct(text: str) -> bool:
    """How the release graded a Q&A answer: the grade contains "yes" in any case."""
    return "yes" in text.lower()
