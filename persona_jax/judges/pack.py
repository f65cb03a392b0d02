"""Judge records as token ids in one compressed file, for training where the data is not.

Why: fine-tuning the judge's backbone wants an accelerator, and an accelerator box may have
neither the released dialogues nor the text stack that reads them (TFDS). A pack holds what
training needs (the ids exactly as `tokenize_judge_record` lays them out, the span of the line
and the persona, both labels, and each line's split, task, persona, group half and source),
a few MB for the whole release. Reading a pack needs NumPy alone.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PACK_VERSION = 1
_STRINGS = ("key", "split", "task", "persona", "half", "source")


@dataclasses.dataclass
class Pack:
    """N tokenised judge records; `tokens[offsets[i]:offsets[i + 1]]` are record i's ids."""

    tokens: np.ndarray
    offsets: np.ndarray
    line_span: np.ndarray  # [N, 2] start, end of the judged line
    persona_span: np.ndarray  # [N, 2] start, end of the kept persona
    y: np.ndarray  # [N, 2] int8: prompt-to-line, line-to-line; 1 inconsistent, -1 unknown
    key: np.ndarray
    split: np.ndarray
    task: np.ndarray
    persona: np.ndarray
    half: np.ndarray
    source: np.ndarray
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.y)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def ids(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def arrays(self, rows: Sequence[int], length: int, pad_id: int, batch: int | None = None):
        """Right-padded (ids, mask, line_mask, persona_mask) of `rows`, [batch, length]; rows
        past len(rows) are empty (a fixed batch shape compiles once)."""
        b = len(rows) if batch is None else batch
        ids = np.full((b, length), pad_id, np.int32)
        mask = np.zeros((b, length), bool)
        line = np.zeros((b, length), bool)
        persona = np.zeros((b, length), bool)
        for j, i in enumerate(rows):
            t = self.ids(i)
            if len(t) > length:
                raise ValueError(f"record {self.key[i]} has {len(t)} tokens > length {length}")
            ids[j, : len(t)], mask[j, : len(t)] = t, True
            line[j, self.line_span[i, 0] : self.line_span[i, 1]] = True
            persona[j, self.persona_span[i, 0] : self.persona_span[i, 1]] = True
        return ids, mask, line, persona

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            tokens=self.tokens,
            offsets=self.offsets,
            line_span=self.line_span,
            persona_span=self.persona_span,
            y=self.y,
            meta=np.asarray(json.dumps({**self.meta, "version": PACK_VERSION})),
            **{k: np.asarray(getattr(self, k), dtype=str) for k in _STRINGS},
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Pack:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no judge pack (make one with --mode=pack)")
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("version") != PACK_VERSION:
                raise ValueError(f"{path}: pack version {meta.get('version')} != {PACK_VERSION}")
            arrays = {k: z[k] for k in z.files if k != "meta"}
        return cls(meta=meta, **arrays)


def pack_records(records, tokenizer, max_len: int, max_history_lines: int, meta: dict) -> Pack:
    """Tokenise judge records (`judges.data.JudgeRecord`) into a pack."""
    from persona_jax.judges.data import DOUBTFUL_SOURCES, half_of
    from persona_jax.judges.features import tokenize_records

    toks = tokenize_records(records, tokenizer, max_len, max_history_lines)
    lengths = np.asarray([len(t["ids"]) for t in toks], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Pack(
        tokens=np.concatenate([t["ids"] for t in toks]).astype(np.int32),
        offsets=offsets,
        line_span=np.asarray([[t["line_start"], t["line_end"]] for t in toks], np.int32),
        persona_span=np.asarray([[t["persona_start"], t["persona_end"]] for t in toks], np.int32),
        y=np.asarray([[t["label_p2l"], t["label_l2l"]] for t in toks], np.int8).reshape(-1, 2),
        key=np.asarray([r.key for r in records], dtype=str),
        split=np.asarray([r.split for r in records], dtype=str),
        task=np.asarray([r.task for r in records], dtype=str),
        persona=np.asarray([r.persona_id for r in records], dtype=str),
        half=np.asarray([half_of(r.group) for r in records], dtype=str),
        source=np.asarray([r.source for r in records], dtype=str),
        meta={
            **meta,
            "max_len": max_len,
            "max_history_lines": max_history_lines,
            "pad_id": int(tokenizer.pad_id),
            "doubtful_sources": list(DOUBTFUL_SOURCES),
        },
    )
