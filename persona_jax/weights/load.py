"""Entry points that load a model from a Hugging Face directory or a GGUF file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from persona_jax.models.errors import ModelConfigError
from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Llama, Params
from persona_jax.weights import gguf_io, safetensors_io


def load_pretrained(
    path: str | Path, *, dtype: str = "float32", param_dtype: str | None = None
) -> tuple[LlamaConfig, Params]:
    """Config and params from a HF model directory or a `.gguf` file.

    `dtype` is the compute dtype recorded in the config; `param_dtype` (default: `dtype`) is
    what the arrays are stored as. Every tensor is checked against the config; missing or
    unexpected tensors and wrong shapes raise `WeightsError` naming the file.
    """
    path = Path(path)
    if path.suffix == ".gguf" or path.is_file():
        return gguf_io.load_gguf(path, dtype=dtype, param_dtype=param_dtype)
    if not path.is_dir():
        raise ModelConfigError(f"{path}: no such model directory or GGUF file")
    if not (path / "config.json").is_file():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f"; to load a GGUF file pass its path (found {ggufs})" if ggufs else ""
        raise ModelConfigError(f"{path / 'config.json'}: missing config.json in {path}{hint}")
    config = LlamaConfig.from_pretrained(path, dtype=dtype, param_dtype=param_dtype or dtype)
    params = safetensors_io.load_params(path, config, dtype=np.dtype(config.jnp_param_dtype))
    return config, params


def load_model(path: str | Path, **kwargs: Any) -> Llama:
    """A `Llama` module holding pretrained weights (no random init of the full model)."""
    config, params = load_pretrained(path, **kwargs)
    return model_from_params(config, params)


def model_from_params(config: LlamaConfig, params: Params) -> Llama:
    """Build the NNX module abstractly (`nnx.eval_shape`) and fill in `params`."""
    model = nnx.eval_shape(lambda: Llama(config, rngs=nnx.Rngs(0)))
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, jax.tree.map(jax.numpy.asarray, params))
    nnx.update(model, state)
    return model
