"""Export a model as a Hugging Face directory that `transformers` loads.

    python export_hf.py --checkpoint_dir=DIR_OR_GGUF --output_dir=DIR [--dtype=bfloat16]

Sources: a `train.py` run (its workdir or its `checkpoints/` directory: the policy of the
latest step, with the base model's tokenizer), a Hugging Face model directory (e.g. the
imported default asset) or a llama.cpp `.gguf` file.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import jax
import numpy as np
from absl import app, flags

from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params
from persona_jax.weights import load_pretrained, save_pretrained
from persona_jax.weights.export import TOKENIZER_FILES
from persona_jax.weights.gguf_io import save_tokenizer

_CHECKPOINT_DIR = flags.DEFINE_string(
    "checkpoint_dir",
    None,
    "train.py workdir or checkpoints dir, HF model directory or .gguf file.",
    required=True,
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Directory to write.", required=True)
_DTYPE = flags.DEFINE_enum(
    "dtype", None, ["float32", "bfloat16", "float16"], "On-disk dtype (default: as stored)."
)
_MAX_SHARD_SIZE = flags.DEFINE_string("max_shard_size", "5GB", "Shard the safetensors above this.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a non-empty output directory.")


def load_source(
    path: str | Path, *, scratch_dir: str | Path | None = None
) -> tuple[LlamaConfig, Params, Path | None]:
    """(config, params, tokenizer_dir) of an exportable source.

    A GGUF's tokenizer is rebuilt into `scratch_dir` (a fresh temporary directory if None,
    left for the caller to remove).
    """
    path = Path(path)
    ckpt_dir = _checkpoint_dir(path)
    if ckpt_dir is not None:
        return _load_training_checkpoint(ckpt_dir)
    if path.suffix == ".gguf":
        config, params = load_pretrained(path)
        tok_dir = Path(scratch_dir or tempfile.mkdtemp(prefix="export-tokenizer-"))
        save_tokenizer(path, tok_dir)
        return config, params, tok_dir
    config, params = load_pretrained(path, dtype=_stored_dtype(path))
    has_tokenizer = any((path / name).is_file() for name in TOKENIZER_FILES)
    return config, params, path if has_tokenizer else None


def _checkpoint_dir(path: Path) -> Path | None:
    """The orbax directory of a training run (its workdir or `workdir/checkpoints`), if any."""
    for cand in (path / "checkpoints", path):
        if cand.is_dir() and any(p.name.isdigit() for p in cand.iterdir()):
            return cand
    return None


def _load_training_checkpoint(ckpt_dir: Path) -> tuple[LlamaConfig, Params, Path | None]:
    """The policy of the latest step of a `train.py` run, with the base model's tokenizer."""
    from persona_jax.checkpoint import Checkpointer

    restored = Checkpointer(ckpt_dir).restore_raw()
    meta = restored.meta
    if "model" not in meta or "config" not in meta:
        raise ValueError(f"{ckpt_dir}: step {restored.step} is not a train.py checkpoint")
    fields = {**meta["model"]}
    for key in ("rope_scaling", "eos_token_ids"):
        fields[key] = tuple(fields.get(key) or ())
    config = LlamaConfig(**fields)
    params = jax.tree.map(np.asarray, restored.state["params"]["policy"])
    base = meta["config"]["model"]["path"]
    if meta["config"]["model"].get("tiny"):
        base = ""
    if not base:
        from persona_jax.assets import default_model_dir

        base = default_model_dir()
    print(f"exporting the policy of {ckpt_dir} step {restored.step}")
    return config, params, Path(base)


def _stored_dtype(model_dir: Path) -> str:
    """The dtype a HF directory's config.json says its weights are stored in (else float32)."""
    try:
        d = json.loads((model_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "float32"  # load_pretrained reports the problem with the file
    stored = d.get("dtype") or d.get("torch_dtype")
    return stored if stored in ("float32", "bfloat16", "float16") else "float32"


def main(argv: list[str]) -> None:
    del argv
    with tempfile.TemporaryDirectory(prefix="export-") as scratch:
        config, params, tok_dir = load_source(_CHECKPOINT_DIR.value, scratch_dir=scratch)
        out = save_pretrained(
            config,
            params,
            _OUTPUT_DIR.value,
            tokenizer_dir=tok_dir,
            max_shard_size=_MAX_SHARD_SIZE.value,
            dtype=_DTYPE.value,
            overwrite=_OVERWRITE.value,
        )
    print(out)


if __name__ == "__main__":
    app.run(main)
