"""grain input pipelines: episode batches for RL and tokenised batches for judge training.

Both pipelines are `grain.MapDataset` chains (seeded shuffle -> repeat -> per-process shard ->
batch), so they are deterministic given the seed, disjoint across hosts, and their iterator
state is a small dict that goes into checkpoints: a resumed run reads exactly the batches an
uninterrupted run would have read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grain
import numpy as np

from persona_jax.data.partners import PartnerSpec, format_persona_prompt
from persona_jax.data.persona_bank import Persona
from persona_jax.judges.template import Encoder, JudgeTemplate, build_judge_input

DEFAULT_BUCKETS = (128, 256, 384, 512, 768, 1024)


def _process_shard(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} not in [0, {process_count})")
    return process_index, process_count


def _columns(batch: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Batch records as columns of Python lists (strings stay strings)."""
    return {k: [r[k] for r in batch] for k in batch[0]}


# ---------------------------------------------------------------------------- episodes


def episode_records(
    personas: Sequence[Persona], partners: Mapping[str, PartnerSpec]
) -> list[dict[str, Any]]:
    """One record per persona: its role prompt and everything the partner side needs."""
    if not personas:
        raise ValueError("episode pipeline got an empty persona list (empty split?)")
    out = []
    for p in personas:
        spec = partners[p.role]
        out.append(
            {
                "persona_id": p.id,
                "role": p.role,
                "persona": p.description,
                "user_prompt": format_persona_prompt(p, partners),
                "partner": spec.partner,
            }
        )
    return out


def _with_partner_turn(partners: Mapping[str, PartnerSpec]) -> Callable:
    """A grain random map picking the partner's topic and opening line for an episode.

    Drawn from the element's own seeded RNG, so the same persona meets different lessons and
    openings across epochs while every run with the same seed sees the same ones.
    """

    def fn(record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        spec = partners[record["role"]]
        topic: dict[str, str] = {"subject": "", "topic": "", "grade_level": ""}
        if spec.topics:
            t = spec.topics[int(rng.integers(len(spec.topics)))]
            topic = {"subject": t.subject, "topic": t.topic, "grade_level": t.grade_level}
            system = spec.render_system_prompt(subject=t.subject, grade=t.grade_level)
        else:
            system = spec.render_system_prompt()
        line = spec.render_opening_line(
            int(rng.integers(len(spec.opening_lines))), topic=topic["topic"] or None
        )
        return {**record, **topic, "partner_prompt": system, "opening_line": line}

    return fn


def episode_pipeline(
    personas: Sequence[Persona],
    partners: Mapping[str, PartnerSpec],
    *,
    batch_size: int,
    seed: int,
    num_epochs: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.IterDataset:
    """Batches (dicts of lists) of episode specs for this process; `batch_size` is per process."""
    index, count = _process_shard(process_index, process_count)
    ds = (
        grain.MapDataset.source(episode_records(personas, partners))
        .shuffle(seed=seed)
        .repeat(num_epochs)
        .random_map(_with_partner_turn(partners), seed=seed)
    )
    ds = ds[index::count]
    return ds.batch(batch_size, drop_remainder=True, batch_fn=_columns).to_iter_dataset()


# ---------------------------------------------------------------------------- judge data


def bucket_length(n: int, buckets: Sequence[int]) -> int:
    """Smallest bucket >= n (static shapes: one compilation per bucket, not per length)."""
    for b in sorted(buckets):
        if n <= b:
            return b
    raise ValueError(f"length {n} exceeds the largest bucket {max(buckets)}")


def tokenize_judge_record(
    record: Mapping[str, Any],
    tokenizer: Encoder,
    template: JudgeTemplate,
    max_len: int,
    max_history_lines: int | None = None,
) -> dict[str, Any]:
    """Text record -> judge ids under the truncation rule.

    `record["history"]` is a sequence of (is_self, text) pairs, oldest first; only the last
    `max_history_lines` are considered (the RL step shows the judge a fixed window too).
    A label that is None (the 70B judge gave no readable verdict) becomes -1, which the
    judge-training losses mask out. `persona_start:persona_end` is the kept persona's span.
    """
    lines = list(record["history"])
    if max_history_lines is not None:
        lines = lines[len(lines) - max_history_lines :] if max_history_lines > 0 else []
    history = [template.history_line(bool(s), tokenizer.encode(t.strip())) for s, t in lines]
    persona = tokenizer.encode(record["persona"])
    built = build_judge_input(template, persona, history, tokenizer.encode(record["line"]), max_len)
    label = lambda v: -1 if v is None else int(v)
    return {
        "ids": np.asarray(built.ids, np.int32),
        "line_start": built.line_start,
        "line_end": built.line_end,
        "persona_start": len(template.persona_header),
        "persona_end": len(template.persona_header) + len(persona) - built.persona_cut,
        "dropped_history": built.dropped_history,
        "label_p2l": label(record["label_p2l"]),
        "label_l2l": label(record["label_l2l"]),
    }


def pad_judge_batch(batch: Sequence[Mapping[str, Any]], buckets: Sequence[int], pad_id: int):
    """Right-pad a list of tokenised examples to the bucket of the longest one."""
    length = bucket_length(max(len(r["ids"]) for r in batch), buckets)
    ids = np.full((len(batch), length), pad_id, np.int32)
    mask = np.zeros((len(batch), length), bool)
    line_mask = np.zeros((len(batch), length), bool)
    persona_mask = np.zeros((len(batch), length), bool)
    for i, r in enumerate(batch):
        n = len(r["ids"])
        ids[i, :n], mask[i, :n] = r["ids"], True
        line_mask[i, r["line_start"] : r["line_end"]] = True
        persona_mask[i, r["persona_start"] : r["persona_end"]] = True
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "line_mask": line_mask,
        "persona_mask": persona_mask,
        "label_p2l": np.asarray([r["label_p2l"] for r in batch], np.int32),
        "label_l2l": np.asarray([r["label_l2l"] for r in batch], np.int32),
        "dropped_history": np.asarray([r["dropped_history"] for r in batch], np.int32),
    }


def judge_pipeline(
    records: Sequence[Mapping[str, Any]],
    tokenizer: Encoder,
    *,
    pad_id: int,
    batch_size: int,
    seed: int,
    max_len: int = 512,
    max_history_lines: int | None = None,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    shuffle: bool = True,
    num_epochs: int | None = 1,
    drop_remainder: bool = False,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.IterDataset:
    """Tokenised, bucket-padded judge-training batches for this process."""
    if not records:
        raise ValueError("judge pipeline got no records")
    if max_len > max(buckets):
        raise ValueError(f"max_len={max_len} exceeds the largest bucket {max(buckets)}")
    index, count = _process_shard(process_index, process_count)
    template = JudgeTemplate.for_tokenizer(tokenizer)
    ds = grain.MapDataset.source(list(records))
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs)[index::count]
    ds = ds.map(lambda r: tokenize_judge_record(r, tokenizer, template, max_len, max_history_lines))
    batch_fn = lambda b: pad_judge_batch(b, buckets, pad_id)
    return ds.batch(batch_size, drop_remainder=drop_remainder, batch_fn=batch_fn).to_iter_dataset()
