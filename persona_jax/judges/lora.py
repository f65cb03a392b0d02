"""Low-rank adapters for the distilled judge's backbone layers.

Why: a head over frozen base features tops out well below the 70B judge (the features were
never asked to compare a line with a persona). Training the backbone itself would make the
judge a second 12-layer model to ship; low-rank adapters (W + scale * A @ B per projection)
train that comparison into the layers for a few MB. They are merged into the truncated
backbone when the judge is loaded, so the judge that runs inside the RL step is the same
function over the same shapes as a head-only judge: no extra cost per scored line.

Adapters are stored per projection on the stacked `layers` axis of the Llama params
(`a`: [L, in, r], `b`: [L, r, out]); `b` starts at zero, so a fresh adapter is the frozen
backbone exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file, save_file

from persona_jax.models.llama.model import Params

TARGETS = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")
LORA_FILE = "lora.safetensors"
Lora = dict[str, dict[str, jax.Array]]


def init_lora(layers: Params, rank: int, rng: jax.Array, targets: Sequence[str] = TARGETS) -> Lora:
    """Adapters for `targets` of the stacked layer params: `a` ~ N(0, 1/in), `b` = 0."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    unknown = [t for t in targets if t not in layers]
    if unknown:
        raise ValueError(f"LoRA targets {unknown} are not backbone projections {sorted(layers)}")
    out: Lora = {}
    for t, key in zip(targets, jax.random.split(rng, len(targets)), strict=True):
        n, d_in, d_out = layers[t].shape
        a = jax.random.normal(key, (n, d_in, rank), jnp.float32) / np.sqrt(d_in)
        out[t] = {"a": a, "b": jnp.zeros((n, rank, d_out), jnp.float32)}
    return out


def merge_lora(backbone: Params, lora: Lora, scale: float) -> Params:
    """The backbone with each adapted projection replaced by W + scale * A @ B (pure)."""
    if not lora:
        return backbone
    layers = dict(backbone["layers"])
    for t, ab in lora.items():
        if t not in layers:
            raise ValueError(f"LoRA adapter for {t!r} but the backbone has no such projection")
        w = layers[t]
        if ab["a"].shape[:2] != w.shape[:2] or ab["b"].shape[::2] != (w.shape[0], w.shape[2]):
            raise ValueError(
                f"LoRA {t}: a {ab['a'].shape} / b {ab['b'].shape} do not fit weight {w.shape}"
            )
        delta = jnp.einsum("lir,lro->lio", ab["a"], ab["b"]) * scale
        layers[t] = (w.astype(jnp.float32) + delta).astype(w.dtype)
    return {**backbone, "layers": layers}


def save_lora(path: str | Path, lora: Lora) -> None:
    save_file(
        {f"{t}.{k}": np.asarray(v, np.float32) for t, ab in lora.items() for k, v in ab.items()},
        str(path),
    )


def load_lora(path: str | Path) -> Lora:
    out: Lora = {}
    for name, value in load_file(str(path)).items():
        t, _, k = name.rpartition(".")
        if k not in ("a", "b") or not t:
            raise ValueError(f"{path}: unexpected tensor {name!r} (want <projection>.a / .b)")
        out.setdefault(t, {})[k] = jnp.asarray(value)
    for t, ab in out.items():
        if set(ab) != {"a", "b"}:
            raise ValueError(f"{path}: adapter {t!r} lacks {sorted({'a', 'b'} - set(ab))}")
    return out


def num_params(lora: Lora) -> int:
    return sum(int(np.prod(v.shape)) for ab in lora.values() for v in ab.values())
