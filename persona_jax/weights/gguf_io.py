"""Reading llama.cpp GGUF files: metadata -> `LlamaConfig`, tensors -> our params.

The `gguf` package parses the container (a memory-mapped view of each tensor's bytes); the
dequantisation is ours, in NumPy, for the block formats persona_jax needs (F32, F16, BF16,
Q8_0, Q4_0, Q4_1). Keeping it here pins the arithmetic (and so the exact float32 values the RL
code starts from) independently of `gguf` releases; tests check it against
`gguf.quants.dequantize`.

llama.cpp stores the query/key projections of `llama`-architecture models with the rows of
each head permuted (it runs RoPE on interleaved pairs where Hugging Face rotates halves); the
permutation is undone here so the weights match the Hugging Face checkpoint they came from.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader
from tqdm.auto import tqdm

from persona_jax.models.errors import ModelConfigError
from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params
from persona_jax.weights.errors import WeightsError
from persona_jax.weights.names import ParamBuilder, check_names, expected_tensors

Q = GGMLQuantizationType
SUPPORTED_TYPES = (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1)
# GGUF architecture -> (HF model_type, Q/K rows permuted by llama.cpp, default rms eps).
ARCHITECTURES = {"llama": ("llama", True, 1e-5), "qwen2": ("qwen2", False, 1e-6)}
_BLOCK = {Q.Q8_0: (32, 34), Q.Q4_0: (32, 18), Q.Q4_1: (32, 20)}  # (values, bytes) per block
_ROPE_FREQS = "rope_freqs.weight"


# ---------------------------------------------------------------------------- dequantisation


def dequantize(
    raw: np.ndarray, ggml_type: GGMLQuantizationType, shape: tuple[int, ...]
) -> np.ndarray:
    """float32 values of shape `shape` (NumPy order) from a tensor's raw little-endian bytes."""
    data = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    n = math.prod(shape)
    if ggml_type == Q.F32:
        out = data.view(np.float32)
    elif ggml_type == Q.F16:
        out = data.view(np.float16).astype(np.float32)
    elif ggml_type == Q.BF16:
        out = (data.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    elif ggml_type in _BLOCK:
        block, nbytes = _BLOCK[ggml_type]
        if n % block or data.size != n // block * nbytes:
            raise ValueError(f"{ggml_type.name}: {data.size} bytes do not hold {n} values")
        out = _dequantize_blocks(data.reshape(-1, nbytes), ggml_type)
    else:
        raise ValueError(f"unsupported GGML type {ggml_type.name}")
    if out.size != n:
        raise ValueError(f"{ggml_type.name}: {data.size} bytes do not hold {n} values")
    return out.reshape(shape)


def _dequantize_blocks(blocks: np.ndarray, ggml_type: GGMLQuantizationType) -> np.ndarray:
    """Q8_0: d*q (q int8). Q4_0: d*(q-8). Q4_1: d*q+m. Nibbles: low halves first, then high."""
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    if ggml_type == Q.Q8_0:
        return blocks[:, 2:].copy().view(np.int8).astype(np.float32) * d
    offset = 4 if ggml_type == Q.Q4_1 else 2
    packed = blocks[:, offset:]
    q = np.concatenate([packed & 0x0F, packed >> 4], axis=1)
    if ggml_type == Q.Q4_0:
        return (q.astype(np.int8) - np.int8(8)).astype(np.float32) * d
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    return d * q.astype(np.float32) + m


def unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's `permute` of Q/K rows (per head: interleaved pairs -> two halves)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's `permute` (HF -> GGUF), the inverse of `unpermute_rows`; used by tests."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ---------------------------------------------------------------------------- metadata


def _open(path: Path) -> GGUFReader:
    if not path.is_file():
        raise WeightsError(f"{path}: GGUF file does not exist")
    try:
        return GGUFReader(str(path))
    except (ValueError, OSError, IndexError, KeyError) as e:
        raise WeightsError(
            f"{path}: not a readable GGUF file, truncated or corrupt ({e})"
        ) from None


def metadata(reader: GGUFReader, key: str, default: Any = None) -> Any:
    """One metadata value (str, int, float, list), or `default` when absent."""
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _f32(x: float) -> float:
    """GGUF stores float32; use its shortest decimal (9.99999975e-06 -> 1e-05)."""
    return float(str(np.float32(x)))


def hf_config_dict(reader: GGUFReader, source: str) -> dict[str, Any]:
    """A Hugging Face `config.json` dict from GGUF metadata (and tensor presence)."""
    arch = metadata(reader, "general.architecture")
    if arch not in ARCHITECTURES:
        raise ModelConfigError(
            f"{source}: unsupported GGUF architecture {arch!r}; supported: {sorted(ARCHITECTURES)} "
            "(Mistral models are stored as 'llama' by llama.cpp)"
        )
    model_type, _, default_eps = ARCHITECTURES[arch]
    names = {t.name for t in reader.tensors}

    def get(key: str, default: Any = None, *, kind: type = int) -> Any:
        value = metadata(reader, f"{arch}.{key}", default)
        if value is None:
            raise ModelConfigError(f"{source}: missing GGUF metadata {arch}.{key}")
        if not isinstance(value, (int, float)):
            raise ModelConfigError(
                f"{source}: {arch}.{key}={value!r} (per-layer values unsupported)"
            )
        return kind(value)

    hidden, heads = get("embedding_length"), get("attention.head_count")
    head_dim = get("attention.key_length", hidden // heads)
    rope_dim = get("rope.dimension_count", head_dim)
    if rope_dim != head_dim:
        raise ModelConfigError(f"{source}: partial RoPE (dimension_count={rope_dim} < {head_dim})")
    embed = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    vocab = int(embed.shape[1]) if embed is not None else get("vocab_size")
    theta = _f32(get("rope.freq_base", 10000.0, kind=float))
    eos = [metadata(reader, f"tokenizer.ggml.{k}_token_id") for k in ("eos", "eot", "eom")]
    eos_ids = list(dict.fromkeys(int(e) for e in eos if e is not None))
    d: dict[str, Any] = {
        "model_type": model_type,
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": get("feed_forward_length"),
        "num_hidden_layers": get("block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": get("attention.head_count_kv", heads),
        "head_dim": head_dim,
        "rms_norm_eps": _f32(get("attention.layer_norm_rms_epsilon", default_eps, kind=float)),
        "rope_theta": theta,
        "max_position_embeddings": get("context_length", 2048),
        "tie_word_embeddings": "output.weight" not in names,
        "attention_bias": "blk.0.attn_q.bias" in names,
        "bos_token_id": metadata(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": eos_ids[0] if len(eos_ids) == 1 else (eos_ids or None),
        "pad_token_id": metadata(reader, "tokenizer.ggml.padding_token_id"),
    }
    rope = _rope_scaling(reader, arch, theta, head_dim, source)
    if rope:
        d["rope_scaling"] = {"rope_theta": theta, **rope}
    return d


def _rope_scaling(
    reader: GGUFReader, arch: str, theta: float, head_dim: int, source: str
) -> dict[str, Any]:
    """RoPE scaling: linear from metadata; Llama-3 recovered from the `rope_freqs` tensor.

    llama.cpp bakes Llama-3 scaling into per-frequency divisors (`rope_freqs.weight`) instead
    of metadata. The largest divisor is the scaling factor; the band edges are the Llama-3.1
    defaults, accepted only if they reproduce every stored divisor.
    """
    kind = metadata(reader, f"{arch}.rope.scaling.type", "none")
    freqs = next((t for t in reader.tensors if t.name == _ROPE_FREQS), None)
    if kind == "linear" and freqs is None:
        return {
            "rope_type": "linear",
            "factor": float(metadata(reader, f"{arch}.rope.scaling.factor")),
        }
    if kind not in ("none", "linear") or (kind == "linear" and freqs is not None):
        raise ModelConfigError(f"{source}: unsupported RoPE scaling {kind!r}")
    if freqs is None:
        return {}
    divisors = dequantize(freqs.data, freqs.tensor_type, (head_dim // 2,)).astype(np.float64)
    old_ctx = metadata(reader, f"{arch}.rope.scaling.original_context_length", 8192)
    rope = {
        "rope_type": "llama3",
        "factor": float(divisors.max()),
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": int(old_ctx),
    }
    probe = LlamaConfig.from_hf_dict(
        {
            "model_type": "llama",
            "vocab_size": 1,
            "hidden_size": head_dim,
            "intermediate_size": 1,
            "num_hidden_layers": 1,
            "num_attention_heads": 1,
            "rope_scaling": {"rope_theta": theta, **rope},
        },
        source=source,
    )
    base = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if not np.allclose(base / divisors, probe.inv_freq(), rtol=1e-4):
        raise ModelConfigError(
            f"{source}: {_ROPE_FREQS} is not a Llama-3 RoPE scaling we recognise"
        )
    return rope


def read_config(path: str | Path) -> LlamaConfig:
    """The `LlamaConfig` of a GGUF file (metadata only; tensors are not read)."""
    path = Path(path)
    reader = _open(path)
    return LlamaConfig.from_hf_dict(hf_config_dict(reader, str(path)), source=str(path))


# ---------------------------------------------------------------------------- tensors


def load_gguf(
    path: str | Path, *, dtype: str = "float32", param_dtype: str | None = None
) -> tuple[LlamaConfig, Params]:
    """Config and params (our layout, stored as `param_dtype`, default `dtype`) from a GGUF."""
    path = Path(path)
    source = str(path)
    reader = _open(path)
    hf = hf_config_dict(reader, source)
    overrides = {"dtype": dtype, "param_dtype": param_dtype or dtype}
    config = LlamaConfig.from_hf_dict(hf, source=source, **overrides)
    _, permuted, _ = ARCHITECTURES[metadata(reader, "general.architecture")]
    bad = [t for t in reader.tensors if t.tensor_type not in SUPPORTED_TYPES]
    if bad:
        kinds = sorted({t.tensor_type.name for t in bad})
        raise WeightsError(
            f"{source}: tensor {bad[0].name!r} has GGML type {bad[0].tensor_type.name}, which "
            f"persona_jax cannot dequantise ({len(bad)} tensors of types {kinds}); supported: "
            f"{[t.name for t in SUPPORTED_TYPES]}. Use a F16/BF16/Q8_0/Q4_0/Q4_1 file."
        )
    expected = expected_tensors(config, "gguf")
    check_names((t.name for t in reader.tensors), expected, source=source, ignored=[_ROPE_FREQS])
    builder = ParamBuilder(config, kind="gguf", dtype=np.dtype(config.jnp_param_dtype))
    heads = {".attn_q.": config.num_heads, ".attn_k.": config.num_kv_heads}
    for t in tqdm(reader.tensors, desc="dequantising GGUF", unit="tensor", disable=None):
        if t.name not in expected:
            continue
        shape = tuple(int(s) for s in reversed(t.shape.tolist()))
        if shape != builder.expected_shape(t.name):  # before un-permuting, which reshapes
            raise WeightsError(
                f"{source}: tensor {t.name!r} has shape {shape} but the config expects "
                f"{builder.expected_shape(t.name)}"
            )
        try:
            value = dequantize(t.data, t.tensor_type, shape)
        except ValueError as e:
            raise WeightsError(f"{source}: tensor {t.name!r}: {e}") from None
        for marker, n_head in heads.items():
            if permuted and marker in t.name:
                value = unpermute_rows(value, n_head)
        builder.put(t.name, value, source=source)
    return config, builder.finish(source=source)


# ---------------------------------------------------------------------------- tokenizer


def save_tokenizer(path: str | Path, out_dir: str | Path) -> None:
    """Write the GGUF's tokenizer (with chat template) as Hugging Face tokenizer files.

    `transformers` rebuilds the fast tokenizer from the GGUF vocabulary; we then check that
    the special-token ids and the chat template came through unchanged.
    """
    from transformers import AutoTokenizer  # heavy import, only needed here

    path = Path(path)
    reader = _open(path)
    if metadata(reader, "tokenizer.ggml.model") is None:
        raise WeightsError(f"{path}: GGUF file has no tokenizer (tokenizer.ggml.model missing)")
    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (ValueError, KeyError, OSError) as e:
        raise WeightsError(f"{path}: transformers cannot rebuild the tokenizer ({e})") from None
    for kind in ("bos", "eos", "pad"):
        key = "padding" if kind == "pad" else kind
        want = metadata(reader, f"tokenizer.ggml.{key}_token_id")
        got = getattr(tok, f"{kind}_token_id")
        if want is not None and got != want:
            raise WeightsError(
                f"{path}: tokenizer {kind}_token_id={got}, GGUF metadata says {want}"
            )
    template = metadata(reader, "tokenizer.chat_template")
    if template is not None and tok.chat_template != template:
        raise WeightsError(f"{path}: chat template changed while rebuilding the tokenizer")
    out_dir = Path(out_dir)
    tok.save_pretrained(str(out_dir))
    config_path = out_dir / "tokenizer_config.json"
    if config_path.is_file():  # drop load-time flags transformers records as init kwargs
        cfg = json.loads(config_path.read_text())
        for key in ("is_local", "local_files_only"):
            cfg.pop(key, None)
        config_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def convert_gguf_to_hf(
    gguf_path: str | Path, out_dir: str | Path, dtype: str = "float32", *, overwrite: bool = False
) -> Path:
    """Write a Hugging Face model directory (weights, config, tokenizer) from a GGUF file."""
    from persona_jax.weights.export import save_pretrained
    from persona_jax.weights.load import load_pretrained

    config, params = load_pretrained(gguf_path, dtype=dtype)
    with tempfile.TemporaryDirectory(prefix="gguf-tokenizer-") as tok_dir:
        save_tokenizer(gguf_path, tok_dir)
        return save_pretrained(config, params, out_dir, tokenizer_dir=tok_dir, overwrite=overwrite)
