"""Reading a judge's free-text output as a verdict.

The judge (an LLM) writes a short reason and then its answer, and does not always follow
the requested format: ``YES.``, ``**NO**``, ``Answer: NO, the line aligns``, a reason that
quotes the question (``YES or NO: NO``), an index list written ``[3,5]`` or ``[ 3 ]`` or
repeated after the reason. Labels and rewards built from these outputs must not invent
answers, so the strict parsers here return ``None`` when the output does not settle the
question; callers exclude and count those outputs.

Some outputs never write the YES/NO or the list and give their answer in words only
("..., so the statement does not contradict his background.", "No conflicting lines
found."). :func:`parse_prompt_verdict` and :func:`parse_conflict_list` read those too, but
only when the words are unmixed; the explicit verdict always comes first, and an output
whose explicit verdict is unsettled is never rescued by its words. A verdict read from
words is a meaning ("contradicts" or not), so it bypasses the file's YES/NO polarity.

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
    candidates = _index_list_candidates(text)
    if len(candidates) != 1:
        return None
    return candidates[0]


def _index_list_candidates(text: str) -> list[list[int]]:
    """The distinct bracketed runs of non-negative integers in ``text``, in order."""
    candidates: list[list[int]] = []
    for match in _BRACKETED.finditer(text):
        body = match.group(1)
        if _INT_LIST_BODY.fullmatch(body) is None:
            continue
        values = [int(part) for part in body.split(",") if part.strip()]
        if values not in candidates:
            candidates.append(values)
    return candidates


# Verdicts stated only in words ---------------------------------------------------------
#
# Some judge outputs give a reason and stop, never writing the requested YES/NO or list:
# "..., so the statement does not contradict his background." or "The line does not
# conflict with any earlier line." Those outputs do state their answer, in words. The
# readers below take such a statement only when it is unmixed: every verdict phrase in the
# output reads the same way, no sentence that carries one weighs sides or hedges, and the
# output does not say the line could not be judged. Anything else stays unread (None): a
# mixed "aligns with X but contradicts Y" is a judge that did not decide, not one whose
# answer we may pick.
#
# Each rule was checked on the released outputs that carry BOTH a phrase and an explicit
# verdict (a YES/NO, or a written list), reading the phrase as if the verdict were absent.
# Prompt-to-line: the words reading agrees with the YES/NO in 99.6% of 6,181 outputs
# (every rule at or above 97.6%), in all files but the two Mistral-judged therapy files,
# whose YES/NO disagrees with the judge's own words whichever polarity is assumed (71% at
# best), and where these rules read no otherwise unparsed output. Line-to-line: "no
# conflict" in words goes with a written [] in 97% of 5,118 outputs, and the answer put in
# words ("No conflicting lines found.") in 98.5% of 522; the misses are nearly all judges
# that wrote "no conflict" and then listed the lines that AGREE with the line.

StatedReading = Literal["agrees", "contradicts"]
_CI = re.IGNORECASE

# A negation, then up to five words from a fixed list, then the verb it negates: "does not
# contradict", "does not seem to clearly conflict", "no apparent contradiction", "does not
# present a clear conflict", "not in conflict". Only words that carry a negation on to the
# verb may stand between; anything else ends the phrase, so "the rent not being paid
# conflicts with" or "what he doesn't own shows a conflict" are not read as negated. A line
# break ends it too. A negated verb may be followed by coordinated ones: "no conflict or
# inconsistency", "does not contradict or conflict with".
_NEGATOR = r"(?:\bnot|n't|\bnever|\bno|\bwithout)"
_SPACE = r"[^\S\n]+"
_GAP_WORD = (
    r"(?:a|an|any|the|this|be|been|seem|seems|appear|appears|to|have|has|had|present|"
    r"presenting|show|showing|contain|introduce|introducing|indicate|reveal|express|"
    r"exhibit|provide|providing|create|represent|constitute|find|see|seeing|mention|"
    r"mentioned|state|stated|clear|clearly|clear-cut|apparent|apparently|obvious|obviously|"
    r"real|new|direct|directly|explicit|explicitly|necessarily|entirely|fully|completely|"
    r"perfectly|quite|strongly|significant|significantly|specific|specifically|inherently|"
    r"outright|overt|typically|content-level|previous|previously|prior|earlier|evidence|"
    r"indication|of|in|list|indices|lines|indicated|shown|introduced|presented|expressed|"
    r"made|contained|revealed)\b"
)
_GAP = rf"(?:{_SPACE}{_GAP_WORD}){{0,5}}"
_CONFLICT_ROOT = r"(?:contradict\w*|conflict\w*|inconsisten\w*|clash\w*|at\s+odds|incompatib\w*)\b"
_AGREE_ROOT = r"(?:align\w*|consistent|in\s+line\s+with|in\s+keeping\s+with)\b"


def _negated(root: str) -> re.Pattern[str]:
    coordinated = rf"(?:\s*,?{_SPACE}(?:or|nor)(?:{_SPACE}{_GAP_WORD}){{0,2}}{_SPACE}{root})*"
    return re.compile(rf"{_NEGATOR}{_GAP}{_SPACE}{root}{coordinated}", _CI)


# (rule name, reading, pattern). Negated phrases are read, and blanked out, first, so that
# the verb inside them is not read again as a plain phrase of the other kind.
_NEGATED_CUES: tuple[tuple[str, StatedReading, re.Pattern[str]], ...] = (
    ("negated conflict", "agrees", _negated(_CONFLICT_ROOT)),
    (
        "conflicting lines: none",
        "agrees",
        re.compile(
            r"\bconflict\w*\s+(?:lines?|indices|indexes)(?:\s+found)?\s*:\s*(?:none\b|\[\s*\])",
            _CI,
        ),
    ),
    ("negated alignment", "contradicts", _negated(_AGREE_ROOT)),
)
_PLAIN_CUES: tuple[tuple[str, StatedReading, re.Pattern[str]], ...] = (
    ("conflict", "contradicts", re.compile(rf"\b{_CONFLICT_ROOT}", _CI)),
    (
        "contrasts with",
        "contradicts",
        re.compile(r"\bcontrasts?\s+(?:sharply\s+|starkly\s+)?with\b", _CI),
    ),
    ("out of character", "contradicts", re.compile(r"\bout\s+of\s+character\b", _CI)),
    ("alignment", "agrees", re.compile(rf"\b{_AGREE_ROOT}", _CI)),
)

_CONTRAST_WORDS = (
    r"(?:but|however|although|though|yet|whereas|while|nevertheless|nonetheless|despite|"
    r"except|neither|on\s+the\s+other\s+hand)\b"
)
# In a sentence that carries a verdict phrase, weighing two sides leaves it open ...
_CONTRAST = re.compile(rf"\b{_CONTRAST_WORDS}", _CI)
# ... and so does a sentence that opens by qualifying the one before it.
_OPENS_WITH_CONTRAST = re.compile(rf"^\W*{_CONTRAST_WORDS}", _CI)
# A verdict of degree or of possibility is not a yes or a no.
_HEDGE = re.compile(
    r"\b(?:partial\w*|partly|somewhat|slight\w*|subtl\w*|mixed|entirely|fully|completely|"
    r"perfectly|necessarily|quite|directly|explicitly|specifically|strictly|exactly|"
    r"initially|mostly|largely|generally|arguably|possibly|potentially|perhaps|may|might|"
    r"could|to\s+(?:a|some)\s+(?:degree|extent))\b",
    _CI,
)
_HEDGE_REACH_BEFORE = 3
_HEDGE_REACH_AFTER = 4
# Anywhere in the output: the judge says it could not judge the line ...
_NOT_JUDGED = re.compile(
    r"\b(?:cannot|can't|impossible|not\s+possible|unable|unclear|ambiguous|not\s+provided|"
    r"not\s+enough|insufficient|empty|no\s+statement|did\s+not\s+(?:say|speak|provide)|"
    r"difficult\s+to|hard\s+to|depends)\b",
    _CI,
)
# ... or judged several numbered items, more than the one line it was asked about.
_SEVERAL_ITEMS = re.compile(r"^\s*\d+\s*[.)]\s", re.MULTILINE)
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")

# A YES/NO answer in lower or mixed case ("(yes)", "Yes, there is ..."): the judge answered,
# outside the strict format, so its reason must not be read in place of that answer.
_LOOSE_ANSWER = re.compile(r"\byes\b|\(\s*no\s*\)|\bno\s*[.!)]|^\s*no\b|answer\s+is:?\s*no\b", _CI)
# Line-to-line outputs that name the empty answer in words rather than write "[]".
_LIST_NOUN = r"(?:(?:conflict\w*|inconsisten\w*|contradict\w*)\s+)?(?:list|indices|indexes)"
_EMPTY_LIST_WORDS = re.compile(
    # "Empty list", "empty list as the conflicting indices", "[Empty list]".
    r"\bempty\s+list(?:\s+(?:as|for)\s+(?:the\s+)?conflict\w*\s+(?:lines|indices)(?:\s+list)?)?\b|"
    # "The list of conflicting lines is empty", "conflict indices are empty".
    rf"\b{_LIST_NOUN}\s+(?:\w+\s+){{0,3}}?(?:is|are|will\s+be|would\s+be|should\s+be)\s+empty\b|"
    # "No list needed", "no need to give a list".
    rf"\bno\s+{_LIST_NOUN}\s+(?:is\s+|are\s+)?needed\b|"
    r"\bno\s+need\s+to\s+(?:provide|give|write)\s+(?:a|any)\s+list"
    r"(?:\s+of\s+conflict\w*\s+(?:lines|indices))?\b|"
    # "[None]", "[empty]".
    r"\[\s*(?:none|empty)\s*\]",
    _CI,
)
# The answer in words: no line is named as conflicting.
_NO_CONFLICTING_LINES = re.compile(
    r"\bno\s+conflict\w*\s+(?:lines?|indices|indexes|statements?)\b|"
    r"\bconflict\w*\s+(?:lines?|indices|indexes)(?:\s+found)?\s*:\s*none\b",
    _CI,
)
# A bracket holding a digit is an attempt at a list, however malformed or cut off.
_BRACKET_WITH_DIGIT = re.compile(r"\[[^\[\]]*\d")


def _cue_matches(text: str) -> list[tuple[str, StatedReading, int, int]]:
    """Verdict phrases as ``(rule, reading, start, end)``; negated ones are taken first.

    A matched phrase is blanked out (same length, so positions hold) before the next rule
    runs, so that the verb inside "does not contradict" is not read again as "contradict".
    """
    found: list[tuple[str, StatedReading, int, int]] = []
    rest = text
    for name, reading, pattern in (*_NEGATED_CUES, *_PLAIN_CUES):
        for match in pattern.finditer(rest):
            found.append((name, reading, match.start(), match.end()))
        rest = pattern.sub(lambda m: " " * len(m.group()), rest)
    return found


def stated_cues(text: str) -> list[tuple[str, StatedReading]]:
    """Every verdict phrase in ``text`` as ``(rule name, reading)``, grouped by rule.

    Exposed so that each rule can be audited on its own against explicit verdicts; the
    readers below decide only on outputs whose phrases all read the same way.
    """
    return [(name, reading) for name, reading, _, _ in _cue_matches(text)]


def _sentence_unsettled(sentence: str) -> str | None:
    """Why one sentence leaves its verdict phrases open (see :func:`unsettled_reason`)."""
    cues = _cue_matches(sentence)
    if not cues:
        return "contrast" if _OPENS_WITH_CONTRAST.search(sentence) else None
    # The verdict must be the last word of any weighing: "X, but Y, which contradicts Z"
    # settles; "aligns with X, but does not reflect Y" adds a reservation and does not.
    first = min(start for _, _, start, _ in cues)
    if any(match.start() >= first for match in _CONTRAST.finditer(sentence)):
        return "contrast"
    # Hedges count next to a verdict phrase ("somewhat contradicts", "does not entirely
    # align", "aligns to a degree"), not in the reason around it ("mixed feelings").
    for _, _, start, end in cues:
        before = " ".join(sentence[:start].split()[-_HEDGE_REACH_BEFORE:])
        after = " ".join(sentence[end:].split()[:_HEDGE_REACH_AFTER])
        if _HEDGE.search(f"{before} {sentence[start:end]} {after}"):
            return "hedge"
    return None


def _unjudged_reason(text: str) -> str | None:
    """The output-wide reasons: it says it could not judge, or it judged several lines."""
    if _NOT_JUDGED.search(text):
        return "not judged"
    if _SEVERAL_ITEMS.search(text):
        return "several items"
    return None


def unsettled_reason(text: str) -> str | None:
    """Why an output's verdict phrases do not settle it, or None if nothing stands against.

    Reasons: ``"not judged"`` (it says the line could not be judged), ``"several items"``
    (numbered verdicts on several lines), ``"contrast"`` (in a sentence with a verdict
    phrase, a contrast word comes after the phrase; or a sentence without one opens by
    qualifying what came before) and ``"hedge"`` (a degree or possibility right next to a
    verdict phrase). Reasons around the verdict may weigh and hedge freely.
    """
    reason = _unjudged_reason(text)
    if reason is not None:
        return reason
    for sentence in _SENTENCE_BREAK.split(text):
        reason = _sentence_unsettled(sentence)
        if reason is not None:
            return reason
    return None


def parse_stated_inconsistent(text: str) -> bool | None:
    """Whether the output says in words that the line contradicts the persona.

    True when every verdict phrase says "contradicts" ("contradicts", "does not align
    with", "out of character"), False when every one says it agrees ("does not
    contradict", "aligns with", "no contradiction"), None when there is none, when they
    disagree, or when :func:`unsettled_reason` finds the output open.

    The result is what the words mean, not a YES/NO: it does not depend on what YES meant
    in the file and must not go through :func:`inconsistent_from_yes`. This ignores any
    YES/NO in the text; :func:`parse_prompt_verdict` calls it only when there is none.
    """
    readings = {reading for _, reading in stated_cues(text)}
    if len(readings) != 1 or unsettled_reason(text) is not None:
        return None
    return readings.pop() == "contradicts"


def _has_answer_word(text: str) -> bool:
    """Whether the output holds a YES/NO answer in any case, beyond an echoed question."""
    return bool(_VERDICT_WORD.search(_QUESTION_ECHO.sub(" ", text)) or _LOOSE_ANSWER.search(text))


def parse_prompt_verdict(text: str, polarity: Polarity) -> bool | None:
    """Whether a prompt-to-line output finds the line inconsistent; None if unsettled.

    The explicit verdict decides when there is one (:func:`parse_yes_no`, mapped through
    the file's ``polarity``). Only an output without any YES/NO answer, in any case, is
    read from its words (:func:`parse_stated_inconsistent`): an output whose YES/NO words
    do not settle it stays unsettled rather than being decided by its reason.
    """
    if polarity not in POLARITIES:
        raise ValueError(f"unknown polarity {polarity!r}; expected one of {POLARITIES}")
    explicit = inconsistent_from_yes(parse_yes_no(text), polarity)
    if explicit is not None or _has_answer_word(text):
        return explicit
    return parse_stated_inconsistent(text)


def parse_stated_no_conflicts(text: str) -> bool:
    """Whether a line-to-line output says in words that no earlier line conflicts.

    Two kinds of statement count, and neither may stand beside a statement that something
    does conflict (any plain "conflicts", "contradicts", ...), a bracket with a number in it
    (an attempt at a list), or a remark that the line could not be judged:

    - the answer itself, put in words: "No conflicting lines found.", "(Empty list)",
      "[None]", "There are no conflicting indices." These are the judge writing ``[]``
      without brackets, and read as such whatever the reasoning around them says, as a
      written ``[]`` would be;
    - a finding of no conflict: "The line does not conflict with the history.", "The line
      is consistent with the conversation history." These count only when no sentence
      carrying one weighs sides or hedges (:func:`unsettled_reason`).

    A conflict stated only in words is never turned into indices: there is nothing to read
    them from.
    """
    rest = _EMPTY_LIST_WORDS.sub(" ", text)
    if _BRACKET_WITH_DIGIT.search(rest) or _unjudged_reason(rest) is not None:
        return False
    readings = {reading for _, reading in stated_cues(rest)}
    if "contradicts" in readings:
        return False
    if _EMPTY_LIST_WORDS.search(text) or _NO_CONFLICTING_LINES.search(text):
        return True
    return "agrees" in readings and unsettled_reason(rest) is None


def parse_conflict_list(text: str) -> list[int] | None:
    """The conflicting line indices of a line-to-line output; None if unsettled.

    The written list decides when there is one (:func:`parse_index_list`). An output that
    holds no list at all but says in words that nothing conflicts
    (:func:`parse_stated_no_conflicts`) has stated the empty list and reads as ``[]``.
    Outputs with lists that disagree stay None: their words do not get to pick.
    """
    if _index_list_candidates(text):
        return parse_index_list(text)
    return [] if parse_stated_no_conflicts(text) else None


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
