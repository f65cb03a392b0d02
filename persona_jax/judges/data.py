"""Judge-training records from the paper's released dialogues.

One record per judged line, carrying both of the 70B judge's verdicts (None where that judge
gave none or it could not be read), in the text layout that `tokenize_judge_record` turns
into exactly the ids the RL step builds on device: the persona, the last few conversation
lines as (is_self, text without the "Name: " prefix), and the line.

Splits are the TFDS builder's own (`persona_jax.data.tfds.consistent_llms`): personas that
share a dialogue form one group, and the group's hash decides train/validation/test. The
records reuse the builder's reading of the release, so a line here is in the same split as the
same line in the built dataset.

The two Mistral-judged therapy files resolve to "YES = consistent" although the judge's own
reasons mostly use YES for "contradicts", so their prompt-to-line labels are doubtful; they are
left out by default (`DOUBTFUL_SOURCES`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from persona_jax.data.release_labels import LabelledLine, labelled_lines
from persona_jax.data.released import split_name
from persona_jax.data.tfds.consistent_llms import SPLITS, _read_release

DOUBTFUL_SOURCES: tuple[str, ...] = (
    "therapy/exp/dialogues/mistral-instruct_0_261.json",
    "therapy/exp/dialogues/mistral-instruct_0_501.json",
)
DEFAULT_HISTORY_LINES = 4


@dataclass(frozen=True)
class JudgeRecord:
    """One judged line in the judge's text layout, with both labels and where it came from.

    `history` holds the last lines before the judged one, oldest first, as (is_self, text);
    `is_self` is True for lines of the judged line's own speaker (the persona holder).
    `label_p2l`/`label_l2l` are 1 for inconsistent, 0 for consistent, None for unknown.
    """

    key: str
    task: str
    split: str
    source: str
    persona_id: str
    group: str
    persona: str
    history: tuple[tuple[bool, str], ...]
    line: str
    label_p2l: int | None
    label_l2l: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def history_window(
    line: LabelledLine, max_history_lines: int = DEFAULT_HISTORY_LINES
) -> tuple[tuple[bool, str], ...]:
    """The last `max_history_lines` lines before `line` as (is_self, text), oldest first.

    The release has the two speakers alternate (`released.speaker_at`), so an earlier line
    is the judged speaker's own exactly when it is an even number of lines back.
    """
    if max_history_lines < 0:
        raise ValueError(f"max_history_lines must be >= 0, got {max_history_lines}")
    start = max(len(line.history) - max_history_lines, 0)
    out = []
    for j in range(start, len(line.history)):
        _, text = split_name(line.history[j])
        out.append(((line.line_index - j) % 2 == 0, text))
    return tuple(out)


def record_from_line(
    line: LabelledLine, split: str, group: str, max_history_lines: int = DEFAULT_HISTORY_LINES
) -> JudgeRecord:
    """A labelled line as a judge record in split `split` (decided by the caller's groups)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return JudgeRecord(
        key=f"{line.dialogue_id}:{line.line_index}",
        task=line.task,
        split=split,
        source=line.source,
        persona_id=line.persona_id,
        group=group,
        persona=line.persona,
        history=history_window(line, max_history_lines),
        line=line.line,
        label_p2l=line.prompt_label,
        label_l2l=line.index_label,
    )


def judge_records(
    root: Path,
    *,
    max_history_lines: int = DEFAULT_HISTORY_LINES,
    exclude_sources: Sequence[str] = DOUBTFUL_SOURCES,
) -> list[JudgeRecord]:
    """Every judged line of the release under `root` as a record, in a fixed order.

    The split of a line is the builder's: its persona's group (union of personas that share
    a dialogue, over the whole release, excluded files included) hashed by `split_of`.
    """
    release = _read_release(Path(root))
    excluded = set(exclude_sources)
    out = []
    for dialogues, polarity in release.files:
        for dialogue in dialogues:
            if dialogue.source in excluded:
                continue
            for line in labelled_lines(dialogue, polarity, release.report):
                group = release.groups.find(line.persona_id)
                out.append(
                    record_from_line(
                        line, release.groups.split(line.persona_id), group, max_history_lines
                    )
                )
    return out


def half_of(group: str) -> str:
    """ "A" or "B": a second, independent hash of a persona group, to split train in two.

    Salted so the halves do not correlate with the train/validation/test buckets.
    """
    digest = hashlib.sha256(("judge-half:" + group).encode("utf-8")).digest()
    return "A" if digest[0] % 2 == 0 else "B"


def base_rates(records: Iterable[JudgeRecord]) -> dict[str, dict[str, Any]]:
    """Per task/split: labelled counts and the inconsistent fraction of each head's labels."""
    counts: Counter[tuple[str, str, str, int]] = Counter()
    for r in records:
        for head, label in (("prompt_to_line", r.label_p2l), ("line_to_line", r.label_l2l)):
            if label is not None:
                counts[(r.task, r.split, head, label)] += 1
    out: dict[str, dict[str, Any]] = {}
    for task, split, head in sorted({k[:3] for k in counts}):
        n0, n1 = counts[(task, split, head, 0)], counts[(task, split, head, 1)]
        out.setdefault(f"{task}/{split}", {})[head] = {
            "n": n0 + n1,
            "inconsistent": n1,
            "rate": n1 / max(n0 + n1, 1),
        }
    return out
