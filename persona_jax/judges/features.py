"""Frozen-base features of judge records, at several depths in one pass, cached on disk.

Why: only the judge's head is trained, so the frozen backbone's pooled features of every
record are computed once and reused by every head, depth and hyper-parameter tried. One
forward over the first `max(depths)` layers with `all_layers=True` yields what a truncation
to each k layers would return (the final norm is applied to every layer's output), so one
pass serves every candidate depth.

Several poolings are kept per depth (`POOLS`) so that richer heads can be tried on the same
cache; the shipped judge's `distilled.features` is `line_mean` + `last`.

The cache is a directory of `chunk_NNNNN.npz` files (record keys, float16 features [n,
depths, pools, D], token counts) plus `manifest.json` with everything that decides the
features (base model, max_len, depths, pools). Chunks are written atomically; a run extracts
only the records no chunk holds, so a killed extraction resumes where it stopped, and a
manifest that does not match the request is refused rather than mixed in.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from persona_jax.data.pipelines import tokenize_judge_record
from persona_jax.judges.data import JudgeRecord
from persona_jax.judges.distilled import POOLS, pool, truncate_backbone
from persona_jax.judges.template import Encoder, JudgeTemplate
from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params, hidden_states

CACHE_VERSION = 1


class FeatureCacheError(ValueError):
    """A feature cache that does not match the requested extraction or records."""


@partial(jax.jit, static_argnums=(0, 6))
def depth_features(
    cfg: LlamaConfig,
    params: Params,
    ids: jax.Array,
    mask: jax.Array,
    line_mask: jax.Array,
    persona_mask: jax.Array,
    depths: tuple[int, ...],
) -> jax.Array:
    """[B, len(depths), len(POOLS), D]: pooled features of the k-layer truncation, each k.

    `cfg`/`params` must be truncated to max(depths) layers (no work is spent above it).
    """
    hs, _ = hidden_states(cfg, params, ids, token_mask=mask, all_layers=True)
    sel = hs[jnp.asarray([k - 1 for k in depths])]
    return jax.vmap(lambda h: pool(h, mask, line_mask, persona_mask), out_axes=1)(sel)


def tokenize_records(
    records: Sequence[JudgeRecord], tokenizer: Encoder, max_len: int, max_history_lines: int
) -> list[dict[str, Any]]:
    """Records -> judge ids exactly as `judge_pipeline` (and the RL step) lay them out."""
    template = JudgeTemplate.for_tokenizer(tokenizer)
    return [
        tokenize_judge_record(r.as_dict(), tokenizer, template, max_len, max_history_lines)
        for r in records
    ]


def _batch_arrays(items: Sequence[dict[str, Any]], batch_size: int, length: int, pad_id: int):
    """Fixed [batch_size, length] arrays (rows past len(items) are empty) -> one compile/bucket."""
    ids = np.full((batch_size, length), pad_id, np.int32)
    mask = np.zeros((batch_size, length), bool)
    line = np.zeros((batch_size, length), bool)
    persona = np.zeros((batch_size, length), bool)
    for i, r in enumerate(items):
        n = len(r["ids"])
        ids[i, :n], mask[i, :n] = r["ids"], True
        line[i, r["line_start"] : r["line_end"]] = True
        persona[i, r["persona_start"] : r["persona_end"]] = True
    return ids, mask, line, persona


def _present_keys(cache: Path) -> set[str]:
    keys: set[str] = set()
    for p in sorted(cache.glob("chunk_[0-9][0-9][0-9][0-9][0-9].npz")):
        with np.load(p) as z:
            keys.update(z["keys"].tolist())
    return keys


def _next_chunk(cache: Path) -> int:
    names = [p.name for p in cache.glob("chunk_[0-9][0-9][0-9][0-9][0-9].npz")]
    return max((int(n[6:11]) for n in names), default=-1) + 1


def extract(
    records: Sequence[JudgeRecord],
    tokenizer: Encoder,
    pad_id: int,
    base_cfg: LlamaConfig,
    base_params: Params,
    cache_dir: str | Path,
    *,
    depths: Sequence[int] = (4, 6, 8, 12, 16),
    max_len: int = 384,
    max_history_lines: int = 4,
    batch_size: int = 8,
    chunk_size: int = 256,
    bucket_step: int = 32,
    first: Callable[[JudgeRecord], bool] = lambda r: True,
    base_name: str = "",
    log: Callable[[str], None] = print,
) -> Path:
    """Compute the features of every record the cache lacks; returns the cache directory.

    The cache is a set of per-record features keyed by `JudgeRecord.key`, so a killed run
    resumes with the records it had not written, and records added later (a reader that
    labels more lines) are extracted alone. Records for which `first` is true go first, so a
    usable cache of the main data exists before the optional rest (the doubtful files).
    """
    depths = tuple(sorted(set(int(k) for k in depths)))
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    spec = {
        "version": CACHE_VERSION,
        "base_model": base_name,
        "base_layers": base_cfg.num_layers,
        "hidden_size": base_cfg.hidden_size,
        "depths": list(depths),
        "pools": list(POOLS),
        "max_len": max_len,
        "max_history_lines": max_history_lines,
    }
    mpath = cache / "manifest.json"
    if mpath.exists():
        old = json.loads(mpath.read_text())
        diff = sorted(k for k in spec if old.get(k) != spec[k])
        if diff:
            raise FeatureCacheError(f"{cache}: cache was made with different {diff}; use a new dir")
    mpath.write_text(json.dumps(spec, indent=2) + "\n")
    present = _present_keys(cache)
    todo = [r for r in records if r.key not in present]
    log(f"feature cache {cache}: {len(records) - len(todo)}/{len(records)} records present")
    if not todo:
        return cache
    tokens = tokenize_records(todo, tokenizer, max_len, max_history_lines)
    lengths = [len(t["ids"]) for t in tokens]
    # Records with `first(r)` true first, then by length: tight buckets, little padding.
    order = sorted(range(len(todo)), key=lambda i: (not first(todo[i]), lengths[i], i))
    cfg, params = truncate_backbone(base_cfg, base_params, max(depths))
    bar = tqdm(total=len(todo), unit="rec", desc="features")
    c = _next_chunk(cache)
    for start in range(0, len(order), chunk_size):
        idx = order[start : start + chunk_size]
        t0, real, padded = time.perf_counter(), 0, 0
        feats = []
        for s in range(0, len(idx), batch_size):
            items = [tokens[i] for i in idx[s : s + batch_size]]
            longest = max(len(r["ids"]) for r in items)
            length = min(-(-longest // bucket_step) * bucket_step, max_len)
            arrays = _batch_arrays(items, batch_size, max(length, longest), pad_id)
            out = depth_features(cfg, params, *arrays, depths)
            feats.append(np.asarray(out[: len(items)], np.float16))
            real += sum(len(r["ids"]) for r in items)
            padded += batch_size * arrays[0].shape[1]
            bar.update(len(items))
        seconds = time.perf_counter() - t0
        tmp = cache / f"chunk_{c:05d}.tmp.npz"
        np.savez(
            tmp,
            keys=np.asarray([todo[i].key for i in idx]),
            feats=np.concatenate(feats),
            n_tokens=np.asarray([lengths[i] for i in idx], np.int32),
            dropped_history=np.asarray([tokens[i]["dropped_history"] for i in idx], np.int32),
            seconds=np.float64(seconds),
            padded_tokens=np.int64(padded),
        )
        os.replace(tmp, cache / f"chunk_{c:05d}.npz")
        log(
            f"chunk {c}: {len(idx)} records, {real} tokens ({padded} padded) in {seconds:.1f}s "
            f"= {real / seconds:.0f} tok/s, {len(idx) / seconds:.2f} rec/s"
        )
        c += 1
    bar.close()
    return cache


def load_cache(cache_dir: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The manifest and every chunk's arrays, concatenated (keys, feats, n_tokens, ...)."""
    cache = Path(cache_dir)
    mpath = cache / "manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"{cache}: no feature cache (manifest.json missing)")
    manifest = json.loads(mpath.read_text())
    paths = sorted(cache.glob("chunk_[0-9][0-9][0-9][0-9][0-9].npz"))
    if not paths:
        raise FeatureCacheError(f"{cache}: no feature chunks yet")
    parts: dict[str, list[np.ndarray]] = {}
    seconds = padded = 0.0
    for p in paths:
        with np.load(p) as z:
            for k in ("keys", "feats", "n_tokens", "dropped_history"):
                parts.setdefault(k, []).append(z[k])
            seconds += float(z["seconds"])
            padded += float(z["padded_tokens"])
    out = {k: np.concatenate(v) for k, v in parts.items()}
    manifest = {**manifest, "chunks_present": len(paths), "seconds": seconds, "padded": padded}
    return manifest, out


def features_for(
    records: Sequence[JudgeRecord], cached: dict[str, np.ndarray]
) -> tuple[list[JudgeRecord], np.ndarray]:
    """The records that have cached features, and their features in the same order."""
    where = {k: i for i, k in enumerate(cached["keys"].tolist())}
    kept = [r for r in records if r.key in where]
    return kept, cached["feats"][np.asarray([where[r.key] for r in kept], np.int64)]
