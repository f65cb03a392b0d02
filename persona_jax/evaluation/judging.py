"""Two judges behind one interface: verdicts for a batch of :class:`LineContext`.

- :class:`DistilledLineJudge`: the on-device distilled judge over text, tokenised with the
  training layout, jitted and batched by length bucket; a line is inconsistent when
  P(inconsistent) reaches the judge's decision threshold (its own, from judge_config.json,
  unless overridden; 0.5 for a judge without one).
- :class:`LLMLineJudge`: the LLM judge (a local model through the project's sampler, greedy,
  or an OpenAI-compatible server); it names the earlier lines a line conflicts with, so it
  also gives the paper's conflict counts. Unreadable outputs stay None and are counted.

Both return one :class:`Verdict` per context. Line-to-line is only asked of lines with an
earlier line of the same speaker: the others cannot conflict with anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np

from persona_jax.data.pipelines import pad_judge_batch, tokenize_judge_record
from persona_jax.evaluation.lines import (
    LineContext,
    distilled_record,
    line_to_line_item,
    prompt_to_line_item,
)
from persona_jax.judges.distilled import judge_probs
from persona_jax.judges.llm import (
    ChatBackend,
    JudgeStats,
    LineToLineItem,
    LLMJudge,
    PromptToLineItem,
)
from persona_jax.judges.prompts import Message
from persona_jax.judges.template import JudgeTemplate
from persona_jax.metrics.consistency import count_conflicts
from persona_jax.text.tokenizer import Tokenizer
from persona_jax.train.setup import Judge

DEFAULT_THRESHOLD = 0.5
# Length buckets of the distilled judge's inputs (one compilation each), capped at max_len.
_LENGTH_BUCKETS = (64, 128, 256, 384, 512, 768, 1024, 2048)


@dataclass(frozen=True)
class Verdict:
    """A judge's verdicts on one line; None where not asked or unreadable.

    ``inconsistent``: the line contradicts the persona (prompt-to-line).
    ``conflict``: the line conflicts with at least one earlier line of its speaker.
    ``n_conflicts``: how many distinct earlier lines of the speaker the judge named (only
    judges that name lines give it; it feeds the paper's line-to-line formula).
    ``*_unparsed``: the question was asked but the answer could not be read.
    ``p_*``: the distilled judge's probabilities, for inspection.
    """

    inconsistent: bool | None = None
    conflict: bool | None = None
    n_conflicts: int | None = None
    p2l_unparsed: bool = False
    l2l_unparsed: bool = False
    p_inconsistent: float | None = None
    p_conflict: float | None = None


class LineJudge(Protocol):
    """What the evaluation and agreement runners need of a judge."""

    name: str

    def judge(
        self, contexts: Sequence[LineContext], ask_p2l: Sequence[bool], ask_l2l: Sequence[bool]
    ) -> list[Verdict]: ...

    def describe(self) -> dict[str, Any]: ...


def _check_asks(contexts: Sequence[LineContext], *asks: Sequence[bool]) -> None:
    for ask in asks:
        if len(ask) != len(contexts):
            raise ValueError(f"got {len(ask)} ask flags for {len(contexts)} contexts")


# ------------------------------------------------------------------------------ distilled


def judge_thresholds(judge_dir: str | Path | None, override: float = -1.0) -> tuple[float, float]:
    """Decision thresholds (prompt-to-line, line-to-line) of a saved judge.

    ``override >= 0`` wins; otherwise the judge's own ``threshold_prompt_to_line`` /
    ``threshold_line_to_line`` (chosen on validation when it was trained) or a single
    ``threshold``; 0.5 for a judge that records none (a random head).
    """
    if override >= 0:
        if override > 1:
            raise ValueError(f"a threshold on a probability must be in [0, 1], got {override}")
        return override, override
    raw: dict[str, Any] = {}
    if judge_dir:
        path = Path(judge_dir) / "judge_config.json"
        if path.is_file():
            raw = json.loads(path.read_text())
    single = float(raw.get("threshold", DEFAULT_THRESHOLD))
    return (
        float(raw.get("threshold_prompt_to_line", single)),
        float(raw.get("threshold_line_to_line", single)),
    )


class DistilledLineJudge:
    """The distilled judge on text lines: tokenise, bucket by length, one jitted forward.

    Examples are sorted by length and cut into batches of ``batch_size`` (the last padded
    with copies, so every call has a fixed batch and one of a few lengths: a handful of
    compilations for a whole evaluation; a call with fewer lines uses the next power of two).
    """

    name = "distilled"

    def __init__(
        self,
        judge: Judge,
        tokenizer: Tokenizer,
        thresholds: tuple[float, float],
        *,
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        head_in = int(judge.head["w1"].shape[0])
        if head_in != judge.cfg.feature_size:
            raise ValueError(
                f"judge {judge.source}: its head reads {head_in} features but its pools "
                f"{judge.cfg.pools} give {judge.cfg.feature_size}; the head was trained on "
                "other features (e.g. several depths) and cannot run here"
            )
        self.judge_ = judge
        self.tokenizer = tokenizer
        self.template = JudgeTemplate.for_tokenizer(tokenizer)
        self.thresholds = thresholds
        self.batch_size = batch_size
        max_len = judge.cfg.max_len
        self.buckets = (*(b for b in _LENGTH_BUCKETS if b < max_len), max_len)
        self._probs = jax.jit(partial(judge_probs, judge.backbone_cfg, pools=judge.cfg.pools))

    def tokenize(self, contexts: Sequence[LineContext]) -> list[dict[str, Any]]:
        cfg = self.judge_.cfg
        return [
            tokenize_judge_record(
                distilled_record(c), self.tokenizer, self.template, cfg.max_len,
                cfg.max_history_lines,
            )
            for c in contexts
        ]  # fmt: skip

    def probs_of_tokenized(self, examples: Sequence[dict[str, Any]]) -> np.ndarray:
        """[n, 2] P(inconsistent) (prompt-to-line, line-to-line) of tokenised examples."""
        n = len(examples)
        out = np.zeros((n, 2), np.float32)
        if not n:
            return out
        order = sorted(range(n), key=lambda i: len(examples[i]["ids"]))
        j = self.judge_
        # A call with few lines runs a smaller power-of-two batch instead of mostly padding.
        size = min(self.batch_size, 1 << (n - 1).bit_length())
        for start in range(0, n, size):
            rows = order[start : start + size]
            batch = [examples[i] for i in rows]
            batch += [batch[0]] * (size - len(batch))
            arrays = pad_judge_batch(batch, self.buckets, self.tokenizer.pad_id)
            probs = self._probs(
                j.backbone, j.head, arrays["input_ids"], arrays["attention_mask"],
                arrays["line_mask"], arrays["persona_mask"],
            )  # fmt: skip
            out[rows] = np.asarray(probs)[: len(rows)]
        return out

    def probs(self, contexts: Sequence[LineContext]) -> np.ndarray:
        return self.probs_of_tokenized(self.tokenize(contexts))

    def judge(
        self, contexts: Sequence[LineContext], ask_p2l: Sequence[bool], ask_l2l: Sequence[bool]
    ) -> list[Verdict]:
        _check_asks(contexts, ask_p2l, ask_l2l)
        probs = self.probs(contexts)
        th_p, th_l = self.thresholds
        out = []
        for c, p, a_p, a_l in zip(contexts, probs, ask_p2l, ask_l2l, strict=True):
            a_l = a_l and c.n_earlier_own > 0
            out.append(
                Verdict(
                    inconsistent=bool(p[0] >= th_p) if a_p else None,
                    conflict=bool(p[1] >= th_l) if a_l else None,
                    p_inconsistent=float(p[0]),
                    p_conflict=float(p[1]),
                )
            )
        return out

    def describe(self) -> dict[str, Any]:
        cfg = self.judge_.cfg
        return {
            "kind": "distilled",
            "source": self.judge_.source,
            "base_model": cfg.base_model,
            "num_layers": cfg.num_layers,
            "max_len": cfg.max_len,
            "max_history_lines": cfg.max_history_lines,
            "threshold_prompt_to_line": self.thresholds[0],
            "threshold_line_to_line": self.thresholds[1],
            "batch_size": self.batch_size,
        }


# ------------------------------------------------------------------------------------ LLM


def _prompt_chars(messages: list[Message]) -> int:
    return sum(len(m["content"]) for m in messages)


class LLMLineJudge:
    """The LLM judge over line contexts; requests go out sorted by prompt length.

    Sorting matters for a local back end, which batches requests in the order given: similar
    lengths in a batch waste little padding. Verdicts come back in the contexts' order.
    """

    name = "llm"

    def __init__(
        self,
        backend: ChatBackend,
        description: dict[str, Any],
        history_lines: int,
        max_earlier_lines: int = 0,
    ) -> None:
        self.llm = LLMJudge(backend)
        self.description = description
        self.history_lines = history_lines
        self.max_earlier_lines = max_earlier_lines

    @property
    def stats(self) -> JudgeStats:
        return self.llm.stats

    def prompt_to_line_requests(
        self, contexts: Sequence[LineContext], ask: Sequence[bool]
    ) -> tuple[list[int], list[PromptToLineItem]]:
        """(context indices, items) of the prompt-to-line requests, in the order they are sent
        (by length, so that a local back end batches similar lengths together)."""
        asked = [i for i in range(len(contexts)) if ask[i]]
        items = {i: prompt_to_line_item(contexts[i], self.history_lines) for i in asked}
        asked.sort(key=lambda i: len(items[i].persona) + sum(len(t) for _, t in items[i].history))
        return asked, [items[i] for i in asked]

    def line_to_line_requests(
        self, contexts: Sequence[LineContext], ask: Sequence[bool]
    ) -> tuple[list[int], list[LineToLineItem]]:
        """(context indices, items) of the line-to-line requests, in the order they are sent;
        a line with no earlier line of its speaker asks nothing."""
        asked = [i for i in range(len(contexts)) if ask[i] and contexts[i].n_earlier_own > 0]
        items = {i: line_to_line_item(contexts[i], self.max_earlier_lines) for i in asked}
        asked.sort(key=lambda i: sum(len(t) for _, t in items[i].earlier))
        return asked, [items[i] for i in asked]

    def judge(
        self, contexts: Sequence[LineContext], ask_p2l: Sequence[bool], ask_l2l: Sequence[bool]
    ) -> list[Verdict]:
        _check_asks(contexts, ask_p2l, ask_l2l)
        n = len(contexts)
        inconsistent: list[bool | None] = [None] * n
        p2l_unparsed = [False] * n
        asked, items = self.prompt_to_line_requests(contexts, ask_p2l)
        for i, v in zip(asked, self.llm.judge_prompt_to_line(items), strict=True):
            inconsistent[i], p2l_unparsed[i] = v, v is None

        n_conflicts: list[int | None] = [None] * n
        l2l_unparsed = [False] * n
        asked, l2l_items = self.line_to_line_requests(contexts, ask_l2l)
        named = self.llm.judge_line_to_line(l2l_items)
        for i, value in zip(asked, named, strict=True):
            if value is None:
                l2l_unparsed[i] = True
            else:
                n_conflicts[i] = count_conflicts(value, contexts[i].index, contexts[i].speakers)
        return [
            Verdict(
                inconsistent=inconsistent[i],
                conflict=None if n_conflicts[i] is None else n_conflicts[i] > 0,
                n_conflicts=n_conflicts[i],
                p2l_unparsed=p2l_unparsed[i],
                l2l_unparsed=l2l_unparsed[i],
            )
            for i in range(n)
        ]

    def describe(self) -> dict[str, Any]:
        return {
            **self.description,
            "history_lines": self.history_lines,
            "max_earlier_lines": self.max_earlier_lines,
        }


def local_generate_fn(
    sampler: Any, max_new_tokens: int, max_batch_tokens: int = 16384
) -> Callable[[Sequence[list[Message]]], list[str]]:
    """A greedy generate function over the project's sampler, for :class:`LocalBackend`.

    Greedy so that the same lines always get the same verdicts; generation stops at the
    tokenizer's end-of-turn ids. A batch whose padded size (rows x longest prompt) exceeds
    ``max_batch_tokens`` is run in consecutive sub-batches: prefill memory grows with rows x
    length^2, and one long judge prompt in a batch of eight can otherwise exhaust host memory.
    """
    from persona_jax.sampling import SamplingParams

    if sampler.tokenizer is None:
        raise ValueError("the local judge's sampler needs a tokenizer (chat prompts)")
    if max_batch_tokens < 1:
        raise ValueError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
    sampling = SamplingParams(
        temperature=0.0, max_new_tokens=max_new_tokens, stop_ids=sampler.tokenizer.stop_ids
    )

    def generate(batch: Sequence[list[Message]]) -> list[str]:
        prompts = [sampler.tokenizer.apply_chat_template(m) for m in batch]
        out: list[str] = []
        for group in token_budget_groups([len(p) for p in prompts], max_batch_tokens):
            out.extend(sampler.generate([prompts[i] for i in group], sampling).texts)
        return out

    return generate


def token_budget_groups(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive index groups with ``len(group) * max(length) <= budget`` (a prompt longer
    than the budget runs alone), in order."""
    groups: list[list[int]] = []
    longest = 0
    for i, n in enumerate(lengths):
        if groups and (len(groups[-1]) + 1) * max(longest, n) <= budget:
            groups[-1].append(i)
            longest = max(longest, n)
        else:
            groups.append([i])
            longest = n
    return groups
