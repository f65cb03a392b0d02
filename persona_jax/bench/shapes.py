"""Model shapes the benchmarks can run: the real default asset or random weights of a shape.

`smollm2` loads the real SmolLM2-135M-Instruct asset (or `--model_dir`); every other shape
is random weights (only the shape matters for throughput), e.g. a 1B-class Llama for MFU.
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from persona_jax.models.llama import Llama, LlamaConfig

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        tie_word_embeddings=True,
    ),
    "smollm2": dict(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_layers=30,
        num_heads=9,
        num_kv_heads=3,
        head_dim=64,
        tie_word_embeddings=True,
        rope_theta=100000.0,
    ),
    "llama-1b": dict(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_layers=16,
        num_heads=32,
        num_kv_heads=8,
        head_dim=64,
        tie_word_embeddings=True,
        rope_theta=500000.0,
    ),
}


def bench_model(model: str, model_dir: str = "", *, dtype: str = "float32", real: bool = True):
    """(config, params): the real asset for `smollm2` when `real`, else random weights."""
    if model not in SHAPES:
        raise ValueError(f"unknown model shape {model!r}; choose from {sorted(SHAPES)}")
    if model == "smollm2" and real:
        from persona_jax.assets import default_model_dir
        from persona_jax.weights import load_pretrained

        return load_pretrained(model_dir or default_model_dir(), dtype=dtype)
    cfg = LlamaConfig(**SHAPES[model], dtype=dtype, param_dtype=dtype)
    return cfg, Llama(cfg, rngs=nnx.Rngs(0)).params()
