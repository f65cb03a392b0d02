"""Writing tiny GGUF files the way llama.cpp's converter does, for the weight-import tests.

The HF -> llama.cpp tensor names and the Q/K row permutation are spelled out here
independently of `persona_jax.weights.names`, so a wrong entry in our table fails the tests
instead of being mirrored by them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MERGES = ["h e", "l l", "ll o", "he llo", "Ġ w"]
# GPT-2 byte-level alphabet for printable ASCII, space and newline, then the merge results.
TOKENS = [*SPECIALS, "Ġ", "Ċ", *map(chr, range(33, 127)), "he", "ll", "llo", "hello", "Ġw"]

_HF_TO_GGUF = [
    (r"model\.embed_tokens\.weight", "token_embd.weight"),
    (r"model\.norm\.weight", "output_norm.weight"),
    (r"lm_head\.weight", "output.weight"),
    (r"model\.layers\.(\d+)\.input_layernorm\.weight", r"blk.\1.attn_norm.weight"),
    (r"model\.layers\.(\d+)\.post_attention_layernorm\.weight", r"blk.\1.ffn_norm.weight"),
    (r"model\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)", r"blk.\1.attn_q.\2"),
    (r"model\.layers\.(\d+)\.self_attn\.k_proj\.(weight|bias)", r"blk.\1.attn_k.\2"),
    (r"model\.layers\.(\d+)\.self_attn\.v_proj\.(weight|bias)", r"blk.\1.attn_v.\2"),
    (r"model\.layers\.(\d+)\.self_attn\.o_proj\.weight", r"blk.\1.attn_output.weight"),
    (r"model\.layers\.(\d+)\.mlp\.gate_proj\.weight", r"blk.\1.ffn_gate.weight"),
    (r"model\.layers\.(\d+)\.mlp\.up_proj\.weight", r"blk.\1.ffn_up.weight"),
    (r"model\.layers\.(\d+)\.mlp\.down_proj\.weight", r"blk.\1.ffn_down.weight"),
]


def gguf_name(hf_name: str) -> str:
    for pattern, repl in _HF_TO_GGUF:
        if re.fullmatch(pattern, hf_name):
            return re.sub(pattern, repl, hf_name)
    raise KeyError(hf_name)


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Verbatim `LlamaModel.permute` of llama.cpp's convert_hf_to_gguf.py."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def write_gguf(
    path: Path,
    hf_state: dict[str, np.ndarray],
    hf_config: dict[str, Any],
    *,
    arch: str = "llama",
    qtype: Any = Q.F32,
    tokenizer: bool = True,
    extra_tensors: dict[str, tuple[np.ndarray, Any]] | None = None,
    drop: tuple[str, ...] = (),
    metadata: dict[str, Any] | None = None,
) -> Path:
    """A GGUF file holding `hf_state` as llama.cpp would write it.

    2-D weights are stored as `qtype` (F32/F16/BF16 or a block quantisation, through
    `gguf.quants.quantize`); norms and biases stay F32, as in llama.cpp. `extra_tensors` maps
    a GGUF name to (raw array, GGML type) written as is; `drop` omits GGUF tensors by name.
    """
    heads, kv_heads = hf_config["num_attention_heads"], hf_config["num_key_value_heads"]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(hf_config["num_hidden_layers"])
    w.add_context_length(hf_config["max_position_embeddings"])
    w.add_embedding_length(hf_config["hidden_size"])
    w.add_feed_forward_length(hf_config["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(hf_config["rms_norm_eps"])
    w.add_rope_freq_base(hf_config.get("rope_theta", 10000.0))
    w.add_rope_dimension_count(hf_config["hidden_size"] // heads)
    w.add_vocab_size(hf_config["vocab_size"])
    if tokenizer:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("default")
        w.add_token_list(TOKENS)
        w.add_token_types([3] * len(SPECIALS) + [1] * (len(TOKENS) - len(SPECIALS)))
        w.add_token_merges(MERGES)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_pad_token_id(2)
        w.add_unk_token_id(0)
        w.add_add_bos_token(False)
        w.add_chat_template(CHAT_TEMPLATE)
    for key, value in (metadata or {}).items():
        w.add_key_value(key, value, _value_type(value))
    for hf_name, value in hf_state.items():
        name = gguf_name(hf_name)
        if name in drop:
            continue
        value = np.asarray(value, np.float32)
        if arch == "llama" and ".attn_q." in name:
            value = llama_cpp_permute(value, heads)
        if arch == "llama" and ".attn_k." in name:
            value = llama_cpp_permute(value, kv_heads)
        if value.ndim == 1 or qtype == Q.F32:
            w.add_tensor(name, value)
        elif qtype == Q.F16:
            w.add_tensor(name, value.astype(np.float16))
        else:  # uint8 blocks; the writer derives the element shape from the byte shape
            w.add_tensor(name, gguf.quants.quantize(value, qtype), raw_dtype=qtype)
    for name, (raw, raw_type) in (extra_tensors or {}).items():
        w.add_tensor(name, raw, raw_dtype=raw_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _value_type(value: Any) -> Any:
    if isinstance(value, str):
        return gguf.GGUFValueType.STRING
    if isinstance(value, float):
        return gguf.GGUFValueType.FLOAT32
    return gguf.GGUFValueType.UINT32
