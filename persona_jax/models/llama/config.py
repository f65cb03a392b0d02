"""Configuration of the Llama decoder family, read from and written to Hugging Face `config.json`.

One config class covers Llama, SmolLM2 (a Llama with tied embeddings), Qwen2 (bias on the
query/key/value projections) and Mistral (optional sliding-window attention): they differ only
in a handful of switches, so a single module with switches keeps the sampler, the RL code and
the weight converters free of per-family branches.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from persona_jax.models.errors import ModelConfigError

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
}
_SUPPORTED_ROPE = ("default", "linear", "llama3")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Static shape and numerics of a decoder. Hashable, so it can be a jit static argument."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    model_type: str = "llama"
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_type: str = "default"
    # (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings) for llama3;
    # (factor,) for linear; () otherwise. A tuple keeps the config hashable.
    rope_scaling: tuple[float, ...] = ()
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    sliding_window: int | None = None
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None
    param_dtype: str = "float32"
    dtype: str = "float32"
    # Decoder layers per trip of the layer loop (`lax.scan(unroll=...)`). 1 compiles fastest;
    # more trades compile time for fewer loop trips per token, which is where a GPU decode
    # step of a small model spends its time. Numerics do not depend on it; it is not saved.
    scan_unroll: int = 1

    def __post_init__(self) -> None:
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ModelConfigError(
                f"unsupported model_type {self.model_type!r}; supported: {SUPPORTED_MODEL_TYPES}"
            )
        if self.num_heads % self.num_kv_heads:
            raise ModelConfigError(
                f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}"
            )
        if self.rope_type not in _SUPPORTED_ROPE:
            raise ModelConfigError(
                f"unsupported RoPE scaling {self.rope_type!r}; supported: {_SUPPORTED_ROPE}"
            )
        if self.scan_unroll < 1:
            raise ModelConfigError(f"scan_unroll={self.scan_unroll}; it must be >= 1")
        for name in ("param_dtype", "dtype"):
            if getattr(self, name) not in _DTYPES:
                raise ModelConfigError(
                    f"{name}={getattr(self, name)!r}; use one of {list(_DTYPES)}"
                )

    # ------------------------------------------------------------------ derived quantities
    @property
    def jnp_dtype(self) -> Any:
        return _DTYPES[self.dtype]

    @property
    def jnp_param_dtype(self) -> Any:
        return _DTYPES[self.param_dtype]

    @property
    def num_params(self) -> int:
        d, f, v, n = self.hidden_size, self.intermediate_size, self.vocab_size, self.num_layers
        q, kv = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        per_layer = d * (q + 2 * kv) + q * d + 3 * d * f + 2 * d
        if self.attention_bias:
            per_layer += q + 2 * kv
        head = 0 if self.tie_word_embeddings else d * v
        return v * d + n * per_layer + d + head

    def replace(self, **changes: Any) -> LlamaConfig:
        return dataclasses.replace(self, **changes)

    def inv_freq(self) -> np.ndarray:
        """RoPE inverse frequencies, with the configured scaling applied (float64 -> float32).

        Computed in NumPy once per trace so the same numbers feed every forward; the Llama-3
        rule is the piecewise smoothing of Meta's reference implementation.
        """
        exps = np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim
        inv = 1.0 / (self.rope_theta**exps)
        if self.rope_type == "linear":
            inv = inv / self.rope_scaling[0]
        elif self.rope_type == "llama3":
            factor, low, high, old_ctx = self.rope_scaling
            low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
            wavelen = 2 * math.pi / inv
            scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
            smooth = (old_ctx / wavelen - low) / (high - low)
            smoothed = (1 - smooth) * scaled / factor + smooth * scaled
            medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
            inv = np.where(medium, smoothed, scaled)
        return inv.astype(np.float32)

    # ------------------------------------------------------------------ Hugging Face I/O
    @classmethod
    def from_hf_dict(
        cls, d: dict[str, Any], *, source: str = "config.json", **overrides: Any
    ) -> LlamaConfig:
        """Build from a Hugging Face config dict; `source` names the file in error messages."""
        model_type = d.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            archs = d.get("architectures")
            raise ModelConfigError(
                f"{source}: unsupported architecture (model_type={model_type!r}, "
                f"architectures={archs!r}); supported model types: {SUPPORTED_MODEL_TYPES}"
            )
        try:
            hidden = int(d["hidden_size"])
            heads = int(d["num_attention_heads"])
            rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
            rope_theta = float(rope.get("rope_theta", d.get("rope_theta", 10000.0)))
            rope_type = rope.get("rope_type", rope.get("type", "default")) or "default"
            if rope_type == "llama3":
                scaling: tuple[float, ...] = (
                    float(rope["factor"]),
                    float(rope["low_freq_factor"]),
                    float(rope["high_freq_factor"]),
                    float(rope["original_max_position_embeddings"]),
                )
            elif rope_type == "linear":
                scaling = (float(rope["factor"]),)
            else:
                scaling = ()
            if d.get("mlp_bias"):
                raise ModelConfigError(f"{source}: mlp_bias=true is not supported")
            if d.get("hidden_act", "silu") != "silu":
                raise ModelConfigError(f"{source}: hidden_act={d.get('hidden_act')!r} (need silu)")
            if model_type == "qwen2" and d.get("use_sliding_window"):
                raise ModelConfigError(f"{source}: Qwen2 use_sliding_window=true is not supported")
            window = d.get("sliding_window") if model_type == "mistral" else None
            eos = d.get("eos_token_id")
            eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
            fields = dict(
                vocab_size=int(d["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(d["intermediate_size"]),
                num_layers=int(d["num_hidden_layers"]),
                num_heads=heads,
                num_kv_heads=int(d.get("num_key_value_heads") or heads),
                head_dim=int(d.get("head_dim") or hidden // heads),
                model_type=model_type,
                rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
                rope_theta=rope_theta,
                rope_type=rope_type,
                rope_scaling=scaling,
                max_position_embeddings=int(d.get("max_position_embeddings", 2048)),
                tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
                attention_bias=model_type == "qwen2" or bool(d.get("attention_bias", False)),
                sliding_window=int(window) if window else None,
                bos_token_id=d.get("bos_token_id"),
                eos_token_ids=tuple(int(e) for e in eos_ids),
                pad_token_id=d.get("pad_token_id"),
            )
        except KeyError as e:
            raise ModelConfigError(f"{source}: missing required field {e.args[0]!r}") from None
        except ModelConfigError as e:
            if str(e).startswith(source):
                raise
            raise ModelConfigError(f"{source}: {e}") from None
        fields.update(overrides)
        try:
            return cls(**fields)
        except ModelConfigError as e:
            raise ModelConfigError(f"{source}: {e}") from None

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, **overrides: Any) -> LlamaConfig:
        """Read `config.json` from a Hugging Face model directory."""
        path = Path(model_dir) / "config.json"
        if not path.is_file():
            raise ModelConfigError(f"{path}: missing config.json in model directory {model_dir}")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ModelConfigError(f"{path}: not valid JSON ({e})") from None
        return cls.from_hf_dict(d, source=str(path), **overrides)

    def to_hf_dict(self) -> dict[str, Any]:
        """A `config.json` dict that `transformers` builds the matching PyTorch model from."""
        rope: dict[str, Any] = {"rope_type": self.rope_type, "rope_theta": self.rope_theta}
        if self.rope_type == "llama3":
            f, low, high, old = self.rope_scaling
            rope.update(
                factor=f,
                low_freq_factor=low,
                high_freq_factor=high,
                original_max_position_embeddings=int(old),
            )
        elif self.rope_type == "linear":
            rope["factor"] = self.rope_scaling[0]
        eos: int | list[int] | None = (
            None
            if not self.eos_token_ids
            else self.eos_token_ids[0]
            if len(self.eos_token_ids) == 1
            else list(self.eos_token_ids)
        )
        d: dict[str, Any] = {
            "architectures": [_ARCHITECTURES[self.model_type]],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_parameters": rope,
            "rope_scaling": None if self.rope_type == "default" else rope,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": self.pad_token_id,
            "torch_dtype": self.param_dtype,
            "use_cache": True,
        }
        if self.model_type == "llama":
            d["attention_bias"] = self.attention_bias
            d["mlp_bias"] = False
        if self.model_type == "mistral":
            d["sliding_window"] = self.sliding_window
        if self.model_type == "qwen2":
            d["use_sliding_window"] = False
            d["sliding_window"] = None
        return d
