"""The distilled judge's input format, built at the token level.

The judge sees (persona, recent history, line) laid out as

    <persona header> persona <history header> [Speaker|Other: line\n]* <line header> line <end>

Building it from token ids (the headers are tokenised once) lets the RL step assemble judge
inputs on device from the policy's own tokens, with no detokenise/retokenise round trip, and
lets the data pipeline produce exactly the same ids from text. When the whole does not fit
`max_len`, the rule is: keep the persona and the line, drop the oldest history lines first; if
persona + line alone are too long, cut the persona's tail, then the line's tail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

PERSONA_HEADER = "Persona:\n"
HISTORY_HEADER = "\nEarlier in the conversation:\n"
LINE_HEADER = "\nLine to judge:\n"
END = "\nVerdict:"
SELF_TAG = "Speaker: "
OTHER_TAG = "Other: "


NEWLINE = "\n"


class Encoder(Protocol):
    def encode(self, text: str) -> list[int]: ...


@dataclasses.dataclass(frozen=True)
class JudgeTemplate:
    """Pre-tokenised headers of the judge format for one tokenizer."""

    persona_header: tuple[int, ...]
    history_header: tuple[int, ...]
    line_header: tuple[int, ...]
    end: tuple[int, ...]
    self_tag: tuple[int, ...] = ()
    other_tag: tuple[int, ...] = ()
    newline: tuple[int, ...] = ()

    @classmethod
    def for_tokenizer(cls, tokenizer: Encoder) -> JudgeTemplate:
        enc = lambda s: tuple(tokenizer.encode(s))
        pieces = (PERSONA_HEADER, HISTORY_HEADER, LINE_HEADER, END, SELF_TAG, OTHER_TAG, NEWLINE)
        return cls(*map(enc, pieces))

    def history_line(self, is_self: bool, content: Sequence[int]) -> list[int]:
        """A history line as token ids: tag, content, newline. Pieces are tokenised apart so
        that text-side data and the RL step's generated ids give identical layouts; the
        persona holder is `Speaker` and the partner `Other` whatever the role names were."""
        return [*(self.self_tag if is_self else self.other_tag), *content, *self.newline]

    @property
    def overhead(self) -> int:
        return sum(map(len, (self.persona_header, self.history_header, self.line_header, self.end)))


@dataclasses.dataclass(frozen=True)
class JudgeInput:
    """Token ids of one judge example and what the truncation rule removed."""

    ids: list[int]
    line_start: int  # index of the first token of the judged line
    line_end: int  # one past its last token
    dropped_history: int
    persona_cut: int
    line_cut: int


def build_judge_input(
    template: JudgeTemplate,
    persona: Sequence[int],
    history: Sequence[Sequence[int]],
    line: Sequence[int],
    max_len: int,
) -> JudgeInput:
    """Assemble one example under `max_len` tokens by the stated truncation rule."""
    if max_len <= template.overhead + 2:
        raise ValueError(f"max_len={max_len} leaves no room beyond the template overhead")
    budget = max_len - template.overhead
    persona, line = list(persona), list(line)
    persona_cut = line_cut = 0
    # Persona + line must fit first; the persona gives way before the line (the line is what
    # is judged), but keeps at least half the budget.
    if len(persona) + len(line) > budget:
        keep_persona = max(budget - len(line), budget // 2)
        persona_cut = max(len(persona) - keep_persona, 0)
        persona = persona[: len(persona) - persona_cut]
        room = budget - len(persona)
        line_cut = max(len(line) - room, 0)
        line = line[: len(line) - line_cut]
    room = budget - len(persona) - len(line)
    kept: list[list[int]] = []
    for h in reversed(history):  # newest first, so the oldest are dropped first
        if len(h) > room:
            break
        kept.append(list(h))
        room -= len(h)
    kept.reverse()
    dropped = len(history) - len(kept)
    ids = [*template.persona_header, *persona, *template.history_header]
    for h in kept:
        ids.extend(h)
    ids.extend(template.line_header)
    start = len(ids)
    ids.extend(line)
    end = len(ids)
    ids.extend(template.end)
    return JudgeInput(ids, start, end, dropped, persona_cut, line_cut)
