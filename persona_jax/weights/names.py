"""One table between our parameter layout and the Hugging Face / llama.cpp tensor names.

Hugging Face and GGUF store one tensor per layer with linear weights as [out, in]; we store
each kind of layer weight stacked over a leading `layers` axis as [in, out] (so the decoder is
one `lax.scan` and `x @ w` needs no transpose). Every converter in this package goes through
this table, in both directions, so a new tensor kind is added in exactly one place.

The expected shapes are read off the NNX module itself (`nnx.eval_shape`, no allocation), so the
table cannot drift from `Llama` without `check_table` failing.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Llama, Params
from persona_jax.weights.errors import WeightsError

LAYER = "{i}"


@dataclasses.dataclass(frozen=True)
class TensorName:
    """One parameter: our path, its HF and GGUF names (with `{i}` per layer), orientation."""

    path: tuple[str, ...]
    hf: str
    gguf: str
    transpose: bool
    when: str = "always"  # "always" | "untied" (lm_head) | "bias" (config.attention_bias)

    @property
    def per_layer(self) -> bool:
        return LAYER in self.hf

    def name(self, kind: str, layer: int | None = None) -> str:
        template = self.hf if kind == "hf" else self.gguf
        return template.replace(LAYER, str(layer)) if self.per_layer else template


def _layer(path: str, hf: str, gguf: str, transpose: bool, when: str = "always") -> TensorName:
    return TensorName(
        ("layers", path), f"model.layers.{LAYER}.{hf}", f"blk.{LAYER}.{gguf}", transpose, when
    )


TABLE: tuple[TensorName, ...] = (
    TensorName(("embed",), "model.embed_tokens.weight", "token_embd.weight", False),
    TensorName(("final_norm",), "model.norm.weight", "output_norm.weight", False),
    TensorName(("lm_head",), "lm_head.weight", "output.weight", True, "untied"),
    _layer("attn_norm", "input_layernorm.weight", "attn_norm.weight", False),
    _layer("wq", "self_attn.q_proj.weight", "attn_q.weight", True),
    _layer("wk", "self_attn.k_proj.weight", "attn_k.weight", True),
    _layer("wv", "self_attn.v_proj.weight", "attn_v.weight", True),
    _layer("wo", "self_attn.o_proj.weight", "attn_output.weight", True),
    _layer("bq", "self_attn.q_proj.bias", "attn_q.bias", False, "bias"),
    _layer("bk", "self_attn.k_proj.bias", "attn_k.bias", False, "bias"),
    _layer("bv", "self_attn.v_proj.bias", "attn_v.bias", False, "bias"),
    _layer("mlp_norm", "post_attention_layernorm.weight", "ffn_norm.weight", False),
    _layer("w_gate", "mlp.gate_proj.weight", "ffn_gate.weight", True),
    _layer("w_up", "mlp.up_proj.weight", "ffn_up.weight", True),
    _layer("w_down", "mlp.down_proj.weight", "ffn_down.weight", True),
)

# Buffers some exporters write that carry no information we need.
IGNORED_HF_SUFFIXES = ("rotary_emb.inv_freq",)


def tensor_names(config: LlamaConfig) -> tuple[TensorName, ...]:
    """The table rows this config has (no lm_head when tied, biases only with attention_bias)."""
    keep = {"always": True, "untied": not config.tie_word_embeddings, "bias": config.attention_bias}
    return tuple(t for t in TABLE if keep[t.when])


@functools.lru_cache(maxsize=32)
def param_shapes(config: LlamaConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Our stacked parameter shapes, read off an abstract `Llama` (nothing is allocated)."""
    abstract = nnx.eval_shape(lambda: Llama(config, rngs=nnx.Rngs(0)))
    flat = nnx.to_flat_state(nnx.state(abstract, nnx.Param))
    return {tuple(str(k) for k in path): tuple(v.shape) for path, v in flat}


def check_table(config: LlamaConfig) -> None:
    """Raise if the table and the model disagree on which parameters exist (a code bug)."""
    ours = {t.path for t in tensor_names(config)}
    model = set(param_shapes(config))
    if ours != model:
        raise AssertionError(f"names table {sorted(ours)} != model params {sorted(model)}")


def source_shape(config: LlamaConfig, t: TensorName) -> tuple[int, ...]:
    """Shape of one layer's tensor as HF/GGUF store it ([out, in] for linear weights)."""
    shape = param_shapes(config)[t.path][1 if t.per_layer else 0 :]
    return tuple(reversed(shape)) if t.transpose else shape


def expected_tensors(
    config: LlamaConfig, kind: str = "hf"
) -> dict[str, tuple[TensorName, int | None]]:
    """Every tensor name a checkpoint of this config must contain -> (table row, layer)."""
    out: dict[str, tuple[TensorName, int | None]] = {}
    for t in tensor_names(config):
        for layer in range(config.num_layers) if t.per_layer else [None]:
            out[t.name(kind, layer)] = (t, layer)
    return out


def check_names(
    available: Iterable[str],
    expected: Iterable[str],
    *,
    source: str,
    ignored: Iterable[str] = (),
) -> None:
    """Raise one error listing every missing and every unexpected tensor of a checkpoint."""
    available, expected, ignored = set(available), set(expected), set(ignored)
    missing = sorted(expected - available)
    unexpected = sorted(
        n for n in available - expected - ignored if not n.endswith(IGNORED_HF_SUFFIXES)
    )
    problems = []
    if missing:
        problems.append(f"missing tensors ({len(missing)}): {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors ({len(unexpected)}): {_preview(unexpected)}")
    if problems:
        raise WeightsError(
            f"{source}: checkpoint does not match its config ({'; '.join(problems)}); "
            "is the config for a different architecture or size?"
        )


def _preview(names: list[str], limit: int = 8) -> str:
    more = f", ... (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


class ParamBuilder:
    """Collects per-layer source tensors (any order) into our stacked, transposed layout.

    Arrays are preallocated in the target dtype and filled in place, so peak host memory is
    about one copy of the model plus one source tensor, whatever the number of shards.
    """

    def __init__(self, config: LlamaConfig, *, kind: str = "hf", dtype: Any = np.float32):
        self.config = config
        self.kind = kind
        self.expected = expected_tensors(config, kind)
        shapes = param_shapes(config)
        self._arrays = {t.path: np.empty(shapes[t.path], dtype) for t in tensor_names(config)}
        self._seen: set[str] = set()

    def expected_shape(self, name: str) -> tuple[int, ...]:
        """The shape tensor `name` must have in the source (HF orientation)."""
        return source_shape(self.config, self.expected[name][0])

    def put(self, name: str, value: np.ndarray, *, source: str) -> None:
        """Store tensor `name` (HF orientation), checking its shape against the config."""
        t, layer = self.expected[name]
        want = source_shape(self.config, t)
        if tuple(value.shape) != want:
            raise WeightsError(
                f"{source}: tensor {name!r} has shape {tuple(value.shape)} but the config "
                f"expects {want}"
            )
        if not jnp.issubdtype(value.dtype, jnp.floating):
            raise WeightsError(f"{source}: tensor {name!r} has non-float dtype {value.dtype}")
        array = self._arrays[t.path]
        target = array[layer] if layer is not None else array
        target[...] = value.T if t.transpose else value
        self._seen.add(name)

    def finish(self, *, source: str) -> Params:
        """The nested param dict as JAX arrays; raises if any expected tensor never arrived."""
        check_names(self._seen, self.expected, source=source)
        params: Params = {}
        for path, array in self._arrays.items():
            node = params
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = jnp.asarray(array)
        self._arrays.clear()
        return params


def params_to_hf(
    config: LlamaConfig, params: Params, *, dtype: Any = None
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (HF name, contiguous numpy array in HF orientation) for every tensor, in order.

    Per layer rather than per kind, like `transformers` writes them, so shards hold whole
    layers. One tensor is materialised at a time.
    """
    flat = {t.path: _get(params, t.path) for t in tensor_names(config)}
    host = {path: np.asarray(jax.device_get(v)) for path, v in flat.items()}
    rows = tensor_names(config)
    first = [t for t in rows if not t.per_layer and t.path == ("embed",)]
    last = [t for t in rows if not t.per_layer and t.path != ("embed",)]
    layered = [t for t in rows if t.per_layer]

    def emit(t: TensorName, layer: int | None) -> tuple[str, np.ndarray]:
        value = host[t.path] if layer is None else host[t.path][layer]
        value = value.T if t.transpose else value
        if dtype is not None:
            value = value.astype(dtype)
        return t.name("hf", layer), np.ascontiguousarray(value)

    for t in first:
        yield emit(t, None)
    for layer in range(config.num_layers):
        for t in layered:
            yield emit(t, layer)
    for t in last:
        yield emit(t, None)


def _get(params: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = params
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            raise WeightsError(f"params have no entry {'/'.join(path)!r}")
        node = node[key]
    return node
