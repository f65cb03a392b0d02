"""Export a model as a Hugging Face directory that `transformers` loads.

    python export_hf.py --checkpoint_dir=DIR_OR_GGUF --output_dir=DIR [--dtype=bfloat16]

Sources: a `train.py` run (its workdir or its `checkpoints/` directory: the policy of the
latest step, with the base model's tokenizer), a Hugging Face model directory (e.g. the
imported default asset) or a llama.cpp `.gguf` file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from absl import app, flags

from persona_jax.evaluation.sources import load_model_source
from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params
from persona_jax.weights import save_pretrained

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
    """(config, params, tokenizer_dir) of an exportable source (see the module docstring).

    A GGUF's tokenizer is rebuilt into `scratch_dir` (a fresh temporary directory if None,
    left for the caller to remove).
    """
    source = load_model_source(path, scratch_dir=scratch_dir)
    if source.base_path is not None:
        print(f"exporting the policy of {source.description}")
    return source.config, source.params, source.tokenizer_dir


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
