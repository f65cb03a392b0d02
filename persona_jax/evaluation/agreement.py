"""A judge's verdicts against the stored (70B) verdicts of released-format files.

Truth is the release's own labels as read by the strict parsers
(:func:`persona_jax.data.release_labels.labelled_lines`, polarity resolved per file): a line is
inconsistent for prompt-to-line when the stored verdict says it contradicts the persona, and
for line-to-line when the stored verdict names at least one earlier line of the same speaker.
Lines whose stored verdict is unreadable carry no label and are not scored.

Which lines: by default the held-out test personas of the release's split
(:func:`persona_jax.data.tfds.consistent_llms.split_of` over the builder's persona groups), so
the distilled judge, trained on the train split, is never scored on lines it was fitted to.
The files whose stored scores resolve to "YES = consistent" (the two Mistral-judged therapy
files, whose judge's reasons mostly read YES the other way) have doubtful prompt-to-line labels
and are left out by default; the results name every excluded file.

A judge's unreadable outputs are left out of that kind's agreement and counted.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from persona_jax.data.release_labels import labelled_lines
from persona_jax.data.released import ROLES
from persona_jax.data.tfds.consistent_llms import SPLITS, _read_release
from persona_jax.evaluation.judging import LineJudge, Verdict
from persona_jax.evaluation.lines import LineContext
from persona_jax.metrics.agreement import summary, within_group_kappa

SPLIT_CHOICES: tuple[str, ...] = (*SPLITS, "all")
KINDS: tuple[str, ...] = ("prompt_to_line", "line_to_line")
DOUBTFUL_POLARITY = "yes_consistent"


@dataclass(frozen=True)
class LabelledContext:
    """A judged line of the release with its stored labels (1 inconsistent, 0 consistent,
    None unknown) and where it comes from."""

    context: LineContext
    task: str
    source: str
    dialogue_id: str
    split: str
    label_p2l: int | None
    label_l2l: int | None


@dataclass
class LoadReport:
    """What was read and what was left out, for the results."""

    split: str
    polarity: dict[str, str]
    excluded_sources: list[str]
    lines_by_split: Counter[str]
    excluded_lines: int = 0


def load_labelled(
    root: str | Path, *, split: str = "test", exclude_yes_consistent: bool = True
) -> tuple[list[LabelledContext], LoadReport]:
    """Labelled lines of the release under ``root`` in one split ("all": every split).

    Splits are the dataset builder's (persona groups over the whole release, excluded files
    included), so a line is in the same split here as in the judge's training data.
    """
    if split not in SPLIT_CHOICES:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLIT_CHOICES}")
    release = _read_release(Path(root))
    report = LoadReport(split, dict(release.report.polarity), [], Counter())
    out = []
    for dialogues, polarity in release.files:
        if not dialogues:
            continue
        source = dialogues[0].source
        excluded = exclude_yes_consistent and polarity == DOUBTFUL_POLARITY
        if excluded:
            report.excluded_sources.append(source)
        for dialogue in dialogues:
            speakers = tuple(line.speaker for line in dialogue.lines)
            texts = tuple(line.text for line in dialogue.lines)
            for line in labelled_lines(dialogue, polarity, release.report):
                line_split = release.groups.split(line.persona_id)
                if excluded:
                    report.excluded_lines += 1
                    continue
                report.lines_by_split[line_split] += 1
                if split != "all" and line_split != split:
                    continue
                i = line.line_index
                context = LineContext(
                    persona=line.persona,
                    roles=ROLES[dialogue.task],
                    speakers=speakers[: i + 1],
                    texts=texts[: i + 1],
                )
                out.append(
                    LabelledContext(
                        context=context,
                        task=line.task,
                        source=source,
                        dialogue_id=line.dialogue_id,
                        split=line_split,
                        label_p2l=line.prompt_label,
                        label_l2l=line.index_label,
                    )
                )
    return out, report


def sample_lines(
    lines: Sequence[LabelledContext], max_lines: int, seed: int
) -> list[LabelledContext]:
    """At most ``max_lines`` lines drawn uniformly with a fixed seed, kept in file order.

    Drawn, not the first ones: files come task by task, so a prefix would be one task.
    """
    if max_lines < 0:
        raise ValueError(f"max_lines must be >= 0, got {max_lines}")
    if not max_lines or max_lines >= len(lines):
        return list(lines)
    keep = sorted(random.Random(seed).sample(range(len(lines)), max_lines))
    return [lines[i] for i in keep]


def judge_labelled(
    lines: Sequence[LabelledContext],
    judge: LineJudge,
    *,
    chunk_size: int = 64,
    progress: bool = True,
) -> list[Verdict]:
    """The judge's verdicts on each line, asking only the questions the release labelled."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    out: list[Verdict] = []
    with tqdm(
        total=len(lines), desc=f"{judge.name} judge", unit="line", disable=not progress
    ) as bar:
        for start in range(0, len(lines), chunk_size):
            chunk = lines[start : start + chunk_size]
            out.extend(
                judge.judge(
                    [x.context for x in chunk],
                    [x.label_p2l is not None for x in chunk],
                    [x.label_l2l is not None for x in chunk],
                )
            )
            bar.update(len(chunk))
    return out


def _pairs(lines: Sequence[LabelledContext], verdicts: Sequence[Verdict], kind: str):
    """(task, truth, prediction or None) of every line labelled for ``kind``."""
    for x, v in zip(lines, verdicts, strict=True):
        truth = x.label_p2l if kind == "prompt_to_line" else x.label_l2l
        if truth is None:
            continue
        pred = v.inconsistent if kind == "prompt_to_line" else v.conflict
        yield x.task, truth, None if pred is None else int(pred)


def agreement(
    lines: Sequence[LabelledContext], verdicts: Sequence[Verdict]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per kind, per task and overall (``"all"``): kappa, accuracy, F1 of the inconsistent
    class, n scored, both raters' inconsistent rates, and the judge's unreadable outputs."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in KINDS:
        pairs = list(_pairs(lines, verdicts, kind))
        groups = {"all": pairs}
        for task in sorted({t for t, _, _ in pairs}):
            groups[task] = [p for p in pairs if p[0] == task]
        out[kind] = {}
        for name, members in groups.items():
            scored = [(t, p) for _, t, p in members if p is not None]
            stats = summary([t for t, _ in scored], [p for _, p in scored])
            out[kind][name] = {
                **stats,
                "n_labelled": len(members),
                "n_unparsed": len(members) - len(scored),
            }
    return out


def within_task(table: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per kind, the within-task kappa of an :func:`agreement` table (its per-task rows)."""
    return {
        kind: within_group_kappa({t: s for t, s in per_task.items() if t != "all"})
        for kind, per_task in table.items()
    }


def swap_personas(lines: Sequence[LabelledContext]) -> list[tuple[int, LabelledContext]]:
    """(index, line with another persona of its task) for every line whose task has at least
    two personas: each persona's lines get the next persona of the same task, in sorted order.

    The control for :func:`swap_control`: the same line, a persona it was not written for.
    """
    by_task: dict[str, set[str]] = {}
    for x in lines:
        by_task.setdefault(x.task, set()).add(x.context.persona)
    nxt = {}
    for task, personas in by_task.items():
        ordered = sorted(personas)
        if len(ordered) > 1:
            for i, p in enumerate(ordered):
                nxt[task, p] = ordered[(i + 1) % len(ordered)]
    return [
        (i, replace(x, context=replace(x.context, persona=nxt[x.task, x.context.persona])))
        for i, x in enumerate(lines)
        if (x.task, x.context.persona) in nxt
    ]


def swap_control(
    lines: Sequence[LabelledContext],
    verdicts: Sequence[Verdict],
    judge: LineJudge,
    *,
    chunk_size: int = 64,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """How much the judge's prompt-to-line verdicts depend on the persona.

    The prompt-to-line lines are judged again with another persona of the same task in front
    of them. Per task and overall: n, the judge's inconsistent rate on the real pairs and on
    the swapped ones (the same lines, unreadable verdicts left out of both), and the stored
    rate on the real pairs. A judge whose swapped rate is close to its real rate decides mostly
    from the line alone: its agreement then says little about persona fit.
    """
    pairs = [(i, s) for i, s in swap_personas(lines) if lines[i].label_p2l is not None]
    # Only prompt-to-line is asked: without a line-to-line label none is requested.
    asked = [replace(s, label_l2l=None) for _, s in pairs]
    new = judge_labelled(asked, judge, chunk_size=chunk_size, progress=progress)
    rows: dict[str, list[tuple[int, int, int]]] = {"all": []}
    for (i, s), v in zip(pairs, new, strict=True):
        real = verdicts[i].inconsistent
        if real is None or v.inconsistent is None:
            continue
        row = (int(lines[i].label_p2l), int(real), int(v.inconsistent))
        rows["all"].append(row)
        rows.setdefault(s.task, []).append(row)
    out = {}
    for task, members in sorted(rows.items()):
        n = len(members)
        out[task] = {
            "n": n,
            "stored_rate": sum(r[0] for r in members) / n if n else None,
            "real_rate": sum(r[1] for r in members) / n if n else None,
            "swapped_rate": sum(r[2] for r in members) / n if n else None,
        }
    return out
