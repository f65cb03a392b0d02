"""Writing our params as a Hugging Face model directory that `transformers` loads as is.

The directory is assembled in a temporary sibling and renamed into place at the end, so an
error (or a kill) midway never leaves a half-written model where a loader would find it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params
from persona_jax.weights.errors import WeightsError
from persona_jax.weights.names import params_to_hf
from persona_jax.weights.safetensors_io import write_checkpoint

# Files that make up a Hugging Face tokenizer (any subset; chat template included).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)
_DISK_DTYPES = ("float32", "bfloat16", "float16")


def _np_dtype(name: str) -> np.dtype:
    if name not in _DISK_DTYPES:
        raise ValueError(f"dtype={name!r}; use one of {list(_DISK_DTYPES)}")
    return jnp.dtype(name)  # numpy dtype; bfloat16 comes from ml_dtypes


def generation_config(config: LlamaConfig) -> dict[str, Any]:
    """Minimal `generation_config.json`: the special-token ids generation stops and pads on."""
    eos = list(config.eos_token_ids)
    return {
        "bos_token_id": config.bos_token_id,
        "eos_token_id": eos[0] if len(eos) == 1 else (eos or None),
        "pad_token_id": config.pad_token_id,
    }


def copy_tokenizer(tokenizer_dir: str | Path, out_dir: Path) -> list[str]:
    """Copy the tokenizer files of `tokenizer_dir` (and its generation config, if any)."""
    tokenizer_dir = Path(tokenizer_dir)
    copied = []
    for name in (*TOKENIZER_FILES, "generation_config.json"):
        if (tokenizer_dir / name).is_file():
            shutil.copy2(tokenizer_dir / name, out_dir / name)
            copied.append(name)
    if not set(copied) & {"tokenizer.json", "tokenizer.model", "vocab.json"}:
        raise WeightsError(
            f"{tokenizer_dir}: no tokenizer files (tokenizer.json, tokenizer.model or vocab.json)"
        )
    return copied


def save_pretrained(
    config: LlamaConfig,
    params: Params,
    out_dir: str | Path,
    *,
    tokenizer_dir: str | Path | None = None,
    max_shard_size: int | str = "5GB",
    dtype: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a HF directory: config, safetensors (sharded above `max_shard_size`), tokenizer.

    `dtype` (float32 / bfloat16 / float16) is the on-disk dtype; default: `config.param_dtype`.
    An existing non-empty `out_dir` is replaced only with `overwrite=True`. Returns `out_dir`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise WeightsError(f"{out_dir}: output directory exists and is not empty (overwrite=False)")
    dtype = dtype or config.param_dtype
    np_dtype = _np_dtype(dtype)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result should not be
    try:
        hf_config = config.replace(param_dtype=dtype).to_hf_dict()
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
        write_checkpoint(
            params_to_hf(config, params, dtype=np_dtype), tmp, max_shard_size=max_shard_size
        )
        copied = copy_tokenizer(tokenizer_dir, tmp) if tokenizer_dir is not None else []
        if "generation_config.json" not in copied:
            gen = generation_config(config)
            (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
        for path in tmp.iterdir():  # safetensors writes owner-only files
            path.chmod(0o666 & ~_umask())
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` to `target`; an existing `target` is moved aside first, then deleted."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{new.name[-8:]}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
