"""Reading and writing Hugging Face safetensors checkpoints (single file or sharded).

Reading checks the whole checkpoint against the config before any tensor is copied: every
shard named by the index exists, every tensor is present with the expected shape, nothing
unexpected is there. A truncated or corrupt file fails with its path in the message instead of
deep inside the Rust parser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params
from persona_jax.weights.errors import WeightsError
from persona_jax.weights.names import ParamBuilder, check_names, expected_tensors

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def checkpoint_files(model_dir: Path) -> dict[str, Path]:
    """Map every tensor name to the safetensors file holding it (validating the index)."""
    index_path = model_dir / INDEX_FILE
    single = model_dir / SINGLE_FILE
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise WeightsError(f"{index_path}: not a valid safetensors index ({e!r})") from None
        files = {name: model_dir / fname for name, fname in weight_map.items()}
        for path in sorted(set(files.values())):
            if not path.is_file():
                raise WeightsError(f"{path}: shard listed in {index_path} does not exist")
        return files
    if single.is_file():
        with _open(single) as f:
            return {name: single for name in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    found = sorted(p.name for p in model_dir.glob("*") if p.suffix in (".bin", ".pt", ".gguf"))
    hint = f" (found {found}; only safetensors are read from a directory)" if found else ""
    raise WeightsError(f"{model_dir}: no {SINGLE_FILE} or {INDEX_FILE}{hint}")


def _open(path: Path) -> Any:
    try:
        return safe_open(str(path), framework="numpy")
    except SafetensorError as e:
        raise WeightsError(
            f"{path}: not a readable safetensors file, truncated or corrupt ({e})"
        ) from None


def load_params(model_dir: str | Path, config: LlamaConfig, *, dtype: Any = np.float32) -> Params:
    """Read a HF checkpoint directory into our stacked layout, cast to `dtype`."""
    model_dir = Path(model_dir)
    files = checkpoint_files(model_dir)
    expected = expected_tensors(config, "hf")
    # Like transformers, a tied model ignores a stored lm_head (some exporters write one).
    ignored = ["lm_head.weight"] if config.tie_word_embeddings else []
    check_names(files, expected, source=str(model_dir), ignored=ignored)
    builder = ParamBuilder(config, kind="hf", dtype=dtype)
    by_file: dict[Path, list[str]] = {}
    for name, path in files.items():
        if name in expected:
            by_file.setdefault(path, []).append(name)
    _check_shapes(by_file, builder)
    progress = tqdm(total=len(expected), desc="loading safetensors", unit="tensor", disable=None)
    for path, names in sorted(by_file.items()):
        with _open(path) as f:
            for name in names:
                try:
                    value = f.get_tensor(name)
                except SafetensorError as e:
                    raise WeightsError(f"{path}: cannot read tensor {name!r} ({e})") from None
                builder.put(name, value, source=str(path))
                progress.update()
    progress.close()
    return builder.finish(source=str(model_dir))


def _check_shapes(by_file: dict[Path, list[str]], builder: ParamBuilder) -> None:
    """Check every tensor's presence and shape from the headers alone, before copying any."""
    wrong: list[str] = []
    first: Path | None = None
    for path, names in sorted(by_file.items()):
        with _open(path) as f:
            present = set(f.keys())
            for name in names:
                if name not in present:
                    raise WeightsError(f"{path}: index says it holds {name!r}, but it does not")
                shape = tuple(f.get_slice(name).get_shape())
                if shape != builder.expected_shape(name):
                    first = first or path
                    wrong.append(
                        f"{name!r} has shape {shape}, expected {builder.expected_shape(name)}"
                    )
    if wrong:
        more = f" (+{len(wrong) - 8} more)" if len(wrong) > 8 else ""
        raise WeightsError(
            f"{first}: tensors do not match the config: {'; '.join(wrong[:8])}{more}"
        )


def parse_size(size: int | str) -> int:
    """Bytes from an int or a HF-style size string ("5GB" = 5e9 bytes, "2GiB" = 2 * 2**30)."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*", size.upper())
    if not m or m.group(2) not in _SIZE_UNITS:
        raise ValueError(f"cannot parse size {size!r}; use e.g. 5GB, 500MB or a number of bytes")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def write_checkpoint(
    tensors: Iterable[tuple[str, np.ndarray]], out_dir: Path, *, max_shard_size: int | str
) -> list[Path]:
    """Write tensors as `model.safetensors`, or as shards plus an index above the size limit.

    Tensors are packed greedily in the given order (a tensor bigger than the limit gets a
    shard of its own, as in `transformers`). Each shard is written as soon as it is full, so
    only one shard is held in memory; shards get their final `-of-N` names at the end.
    Returns the written files.
    """
    limit = parse_size(max_shard_size)
    metadata = {"format": "pt"}  # transformers refuses safetensors without a known format
    pending: list[tuple[Path, list[str]]] = []
    shard: dict[str, np.ndarray] = {}
    shard_bytes = total = 0

    def flush() -> None:
        path = out_dir / f"shard-{len(pending) + 1:05d}.tmp"
        save_file(shard, str(path), metadata=metadata)
        pending.append((path, list(shard)))

    for name, value in tensors:
        if shard and shard_bytes + value.nbytes > limit:
            flush()
            shard, shard_bytes = {}, 0
        shard[name] = value
        shard_bytes += value.nbytes
        total += value.nbytes
    flush()
    if len(pending) == 1:
        path = out_dir / SINGLE_FILE
        pending[0][0].rename(path)
        return [path]
    written, weight_map = [], {}
    for k, (tmp, names) in enumerate(pending, start=1):
        path = out_dir / f"model-{k:05d}-of-{len(pending):05d}.safetensors"
        tmp.rename(path)
        weight_map.update(dict.fromkeys(names, path.name))
        written.append(path)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return [*written, out_dir / INDEX_FILE]
