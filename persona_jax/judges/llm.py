"""The LLM judge: the three consistency questions asked of a chat model, answers parsed strictly.

The judge is split from the model that answers it. A :class:`ChatBackend` turns a batch of
chat message lists into completions, in input order; two exist: :class:`LocalBackend`
wraps any batched generate function (the project's sampler with greedy settings, so scores
are reproducible), and :class:`persona_jax.judges.openai_client.OpenAICompatibleBackend`
talks to an OpenAI-compatible server. :class:`LLMJudge` builds the prompts of
:mod:`persona_jax.judges.prompts`, sends a whole batch at once (batching is what makes a
local judge affordable), and parses the replies with the strict parsers.

An output the parsers cannot read stays ``None``: the metrics leave it out of the score and
report how many there were. :class:`JudgeStats` counts requests and unreadable outputs per
question and keeps a few unreadable outputs for inspection, so a judge that drifts from the
requested format shows up in the logs instead of as a silently biased score.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from persona_jax.data.persona_bank import Probe
from persona_jax.judges.prompts import (
    Message,
    line_to_line_messages,
    parse_option_letter,
    prompt_to_line_messages,
    qa_messages,
)
from persona_jax.metrics.verdicts import parse_index_list, parse_yes_no

Question = Literal["prompt_to_line", "line_to_line", "qa"]
QUESTIONS: tuple[Question, ...] = ("prompt_to_line", "line_to_line", "qa")


class JudgeBackendError(RuntimeError):
    """A back end could not produce completions (server unreachable, bad reply, bad count)."""


class ChatBackend(Protocol):
    """Anything that completes a batch of chat message lists, one string per list, in order."""

    def complete(self, batch: Sequence[list[Message]]) -> list[str]: ...


class LocalBackend:
    """A back end over a local batched generate function, fed ``batch_size`` prompts at a time.

    ``generate_fn`` maps chat message lists to completions (e.g. a lambda around the
    project's sampler). Determinism is the generate function's business: give it greedy
    sampling settings so that the same inputs always get the same verdicts. Chunking here
    bounds the batch the device sees, whatever the number of lines to judge.
    """

    def __init__(
        self, generate_fn: Callable[[Sequence[list[Message]]], list[str]], batch_size: int
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.generate_fn = generate_fn
        self.batch_size = batch_size

    def complete(self, batch: Sequence[list[Message]]) -> list[str]:
        out: list[str] = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            texts = list(self.generate_fn(chunk))
            if len(texts) != len(chunk):
                raise JudgeBackendError(
                    f"generate_fn returned {len(texts)} completions for {len(chunk)} prompts"
                )
            bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
            if bad:
                raise JudgeBackendError(f"generate_fn returned non-strings: {sorted(set(bad))}")
            out.extend(texts)
        return out


@dataclasses.dataclass(frozen=True)
class PromptToLineItem:
    """One line to check against its speaker's persona.

    ``history`` is the conversation before the line as ``(speaker role, text)`` pairs.
    """

    persona: str
    role: str
    line: str
    history: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class LineToLineItem:
    """One line to check against the same speaker's earlier lines ``(index, text)``."""

    role: str
    line_index: int
    line: str
    earlier: tuple[tuple[int, str], ...]


@dataclasses.dataclass(frozen=True)
class ProbeItem:
    """One probe put to the simulated user after ``history`` (``(speaker role, text)``)."""

    persona_prompt: str
    role: str
    probe: Probe
    history: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass
class JudgeStats:
    """Requests sent and outputs that could not be read, per question.

    ``skipped`` counts line-to-line items answered without a request (no earlier lines);
    ``stray_indices`` counts indices a line-to-line judge named that were not among the
    earlier lines shown to it (a sign of a confused judge; the metrics ignore them).
    ``unparsed_samples`` keeps the latest few unreadable outputs with their question.
    """

    requests: Counter[str] = dataclasses.field(default_factory=Counter)
    unparsed: Counter[str] = dataclasses.field(default_factory=Counter)
    skipped: Counter[str] = dataclasses.field(default_factory=Counter)
    stray_indices: int = 0
    unparsed_samples: deque[tuple[str, str]] = dataclasses.field(
        default_factory=lambda: deque(maxlen=8)
    )

    def record(self, question: Question, outputs: Sequence[str], parsed: Sequence[object]) -> None:
        self.requests[question] += len(outputs)
        for text, value in zip(outputs, parsed, strict=True):
            if value is None:
                self.unparsed[question] += 1
                self.unparsed_samples.append((question, text))

    def unparsed_rate(self, question: Question) -> float | None:
        """Fraction of this question's outputs that could not be read (None: no requests)."""
        n = self.requests[question]
        return self.unparsed[question] / n if n else None

    def as_dict(self) -> dict[str, int]:
        """Flat counters for a metrics logger, e.g. ``{"judge/qa/unparsed": 2, ...}``."""
        out: dict[str, int] = {}
        for q in QUESTIONS:
            out[f"judge/{q}/requests"] = self.requests[q]
            out[f"judge/{q}/unparsed"] = self.unparsed[q]
        out["judge/line_to_line/skipped"] = self.skipped["line_to_line"]
        out["judge/line_to_line/stray_indices"] = self.stray_indices
        return out


class LLMJudge:
    """Asks a chat back end the three consistency questions and parses the answers strictly."""

    def __init__(self, backend: ChatBackend, stats: JudgeStats | None = None) -> None:
        self.backend = backend
        self.stats = stats if stats is not None else JudgeStats()

    def _ask(self, question: Question, batch: list[list[Message]]) -> list[str]:
        if not batch:
            return []
        outputs = self.backend.complete(batch)
        if len(outputs) != len(batch):
            raise JudgeBackendError(
                f"{question}: back end returned {len(outputs)} completions for {len(batch)} prompts"
            )
        return list(outputs)

    @staticmethod
    def prompt_to_line_batch(items: Sequence[PromptToLineItem]) -> list[list[Message]]:
        """The chat requests `judge_prompt_to_line` sends for `items`, in order."""
        return [prompt_to_line_messages(it.persona, it.role, it.line, it.history) for it in items]

    @staticmethod
    def line_to_line_batch(
        items: Sequence[LineToLineItem],
    ) -> tuple[list[int], list[list[Message]]]:
        """(indices of the items asked, their chat requests) as `judge_line_to_line` sends
        them: an item without earlier lines asks nothing."""
        asked = [i for i, it in enumerate(items) if it.earlier]
        batch = [
            line_to_line_messages(
                items[i].role, items[i].line_index, items[i].line, items[i].earlier
            )
            for i in asked
        ]
        return asked, batch

    def judge_prompt_to_line(self, items: Sequence[PromptToLineItem]) -> list[bool | None]:
        """Per item: True if the judge says the line contradicts the persona, False if not,
        None if its output was unreadable."""
        batch = self.prompt_to_line_batch(items)
        outputs = self._ask("prompt_to_line", batch)
        verdicts = [parse_yes_no(text) for text in outputs]
        self.stats.record("prompt_to_line", outputs, verdicts)
        return verdicts

    def judge_line_to_line(self, items: Sequence[LineToLineItem]) -> list[list[int] | None]:
        """Per item: the earlier line indices the judge named as conflicting, None if its
        output was unreadable.

        Indices are returned as named; counting them (distinct, earlier, same speaker) is
        :func:`persona_jax.metrics.consistency.count_conflicts`'s job. An item without
        earlier lines gets ``[]`` with no request, and is counted in ``stats.skipped``.
        """
        asked, batch = self.line_to_line_batch(items)
        outputs = self._ask("line_to_line", batch)
        parsed = [parse_index_list(text) for text in outputs]
        self.stats.record("line_to_line", outputs, parsed)
        self.stats.skipped["line_to_line"] += len(items) - len(asked)
        result: list[list[int] | None] = [[] for _ in items]
        for i, value in zip(asked, parsed, strict=True):
            result[i] = value
            if value is not None:
                shown = {j for j, _ in items[i].earlier}
                self.stats.stray_indices += sum(1 for j in value if j not in shown)
        return result

    def answer_probes(self, items: Sequence[ProbeItem]) -> list[int | None]:
        """Per item: the option index the simulated user chose, None if unreadable.

        :meth:`grade_probes` compares the choice with the key (``probe.answer``).
        """
        batch = [
            qa_messages(it.persona_prompt, it.role, it.history, it.probe.question, it.probe.options)
            for it in items
        ]
        outputs = self._ask("qa", batch)
        answers = [
            parse_option_letter(text, len(it.probe.options))
            for text, it in zip(outputs, items, strict=True)
        ]
        self.stats.record("qa", outputs, answers)
        return answers

    def grade_probes(self, items: Sequence[ProbeItem]) -> list[bool | None]:
        """Per item: whether the chosen option is the probe's key, None if unreadable; the
        input of :func:`persona_jax.metrics.consistency.qa_accuracy`."""
        answers = self.answer_probes(items)
        return [
            None if a is None else a == it.probe.answer
            for a, it in zip(answers, items, strict=True)
        ]
