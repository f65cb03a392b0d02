"""Reading a model to evaluate or to judge with, from any of the project's model sources.

Sources, as ``export_hf.py`` accepts them: a ``train.py`` run (its workdir or its
``checkpoints/`` directory; the policy of the latest step, with the base model's
tokenizer), a Hugging Face model directory (e.g. the imported default asset) or a llama.cpp
``.gguf`` file (its tokenizer rebuilt into a scratch directory). ``""`` means the default
asset. The loader lives in the package, not in the export script, so that the evaluation
entry point and the benchmarks need not import a script that defines command-line flags.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import jax
import numpy as np

from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params
from persona_jax.weights import load_pretrained
from persona_jax.weights.export import TOKENIZER_FILES


@dataclasses.dataclass
class ModelSource:
    """A loaded model: config, params, where its tokenizer is, and a description to log.

    ``base_path`` is the base model a training checkpoint was trained from ("" when the run
    used the default asset or a tiny random base, see ``base_tiny``); None for other sources.
    """

    config: LlamaConfig
    params: Params
    tokenizer_dir: Path | None
    description: str
    base_path: str | None = None
    base_tiny: bool = False


def checkpoint_dir(path: Path) -> Path | None:
    """The orbax directory of a training run (its workdir or ``workdir/checkpoints``), if any."""
    for cand in (path / "checkpoints", path):
        if cand.is_dir() and any(p.name.isdigit() for p in cand.iterdir()):
            return cand
    return None


def _stored_dtype(model_dir: Path) -> str:
    """The dtype a HF directory's config.json says its weights are stored in (else float32)."""
    try:
        d = json.loads((model_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "float32"  # load_pretrained reports the problem with the file
    stored = d.get("dtype") or d.get("torch_dtype")
    return stored if stored in ("float32", "bfloat16", "float16") else "float32"


def _training_checkpoint(ckpt_dir: Path) -> ModelSource:
    from persona_jax.assets import default_model_dir
    from persona_jax.checkpoint import Checkpointer

    restored = Checkpointer(ckpt_dir).restore_raw()
    if restored is None:
        raise FileNotFoundError(f"{ckpt_dir}: no checkpoint step to restore")
    meta = restored.meta
    if "model" not in meta or "config" not in meta:
        raise ValueError(f"{ckpt_dir}: step {restored.step} is not a train.py checkpoint")
    fields = {**meta["model"]}
    for key in ("rope_scaling", "eos_token_ids"):
        fields[key] = tuple(fields.get(key) or ())
    config = LlamaConfig(**fields)
    params = jax.tree.map(np.asarray, restored.state["params"]["policy"])
    model = meta["config"]["model"]
    tiny = bool(model.get("tiny"))
    base = "" if tiny else str(model.get("path") or "")
    tokenizer_dir = Path(base) if base else default_model_dir()
    return ModelSource(
        config,
        params,
        tokenizer_dir,
        f"{ckpt_dir} step {restored.step}",
        base_path=base,
        base_tiny=tiny,
    )


def load_model_source(path: str | Path, *, scratch_dir: str | Path | None = None) -> ModelSource:
    """Load a model from a run, a HF directory or a GGUF file ("" = the default asset).

    A GGUF's tokenizer is rebuilt into ``scratch_dir`` (a fresh temporary directory if None,
    left for the caller to remove).
    """
    from persona_jax.assets import default_model_dir

    path = Path(path) if str(path) else default_model_dir()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model directory, GGUF file or train.py run")
    ckpt = checkpoint_dir(path) if path.is_dir() else None
    if ckpt is not None:
        return _training_checkpoint(ckpt)
    if path.suffix == ".gguf":
        from persona_jax.weights.gguf_io import save_tokenizer

        config, params = load_pretrained(path)
        tok_dir = Path(scratch_dir or tempfile.mkdtemp(prefix="eval-tokenizer-"))
        save_tokenizer(path, tok_dir)
        return ModelSource(config, params, tok_dir, str(path))
    config, params = load_pretrained(path, dtype=_stored_dtype(path))
    has_tokenizer = any((path / name).is_file() for name in TOKENIZER_FILES)
    return ModelSource(config, params, path if has_tokenizer else None, str(path))
