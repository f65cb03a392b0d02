"""Every bad weights input fails with an error that names the problem and the file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from persona_jax.assets import AssetError, default_gguf_path, default_model_dir
from persona_jax.models.errors import ModelConfigError
from persona_jax.models.llama import Llama, LlamaConfig
from persona_jax.weights import WeightsError, load_pretrained, save_pretrained
from persona_jax.weights.names import params_to_hf
from tests.gguf_testlib import Q, write_gguf

CONFIG = LlamaConfig(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=256,  # a multiple of 256, so ffn_down rows fit K-quant blocks
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    bos_token_id=1,
    eos_token_ids=(2,),
)


@pytest.fixture(scope="module")
def params():
    return Llama(CONFIG, rngs=nnx.Rngs(0)).params()


@pytest.fixture
def hf_dir(tmp_path, params) -> Path:
    return save_pretrained(CONFIG, params, tmp_path / "model")


def _gguf(tmp_path, params, **kwargs) -> Path:
    state = dict(params_to_hf(CONFIG, params))
    return write_gguf(tmp_path / "m.gguf", state, CONFIG.to_hf_dict(), tokenizer=False, **kwargs)


def _raises(exc, path, *fragments):
    """pytest.raises whose message must contain the file path and every fragment."""
    pattern = "".join(f"(?=.*{re.escape(str(f))})" for f in (path, *fragments))
    return pytest.raises(exc, match=re.compile(pattern, re.S))


# ---------------------------------------------------------------------------- HF directories


def test_missing_config_json(hf_dir):
    (hf_dir / "config.json").unlink()
    with _raises(ModelConfigError, hf_dir / "config.json", "missing config.json"):
        load_pretrained(hf_dir)


def test_missing_path(tmp_path):
    with _raises(ModelConfigError, tmp_path / "nope", "no such model directory"):
        load_pretrained(tmp_path / "nope")


def test_unsupported_architecture_in_config_json(hf_dir):
    config = json.loads((hf_dir / "config.json").read_text())
    config.update(model_type="gpt2", architectures=["GPT2LMHeadModel"])
    (hf_dir / "config.json").write_text(json.dumps(config))
    with _raises(ModelConfigError, hf_dir / "config.json", "unsupported architecture", "gpt2"):
        load_pretrained(hf_dir)


def test_wrong_shape_in_safetensors(hf_dir):
    config = json.loads((hf_dir / "config.json").read_text())
    config["intermediate_size"] = 128
    (hf_dir / "config.json").write_text(json.dumps(config))
    with _raises(
        WeightsError,
        hf_dir / "model.safetensors",
        "'model.layers.0.mlp.gate_proj.weight' has shape (256, 32), expected (128, 32)",
    ):
        load_pretrained(hf_dir)


def test_truncated_safetensors(hf_dir):
    path = hf_dir / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    with _raises(WeightsError, path, "truncated"):
        load_pretrained(hf_dir)


def test_missing_and_unexpected_tensors(hf_dir):
    path = hf_dir / "model.safetensors"
    tensors = load_file(path)
    del tensors["model.layers.1.mlp.up_proj.weight"]
    tensors["model.layers.0.self_attn.q_norm.weight"] = np.ones(8, np.float32)
    save_file(tensors, path, metadata={"format": "pt"})
    with _raises(
        WeightsError,
        hf_dir,
        "missing tensors (1): model.layers.1.mlp.up_proj.weight",
        "unexpected tensors (1): model.layers.0.self_attn.q_norm.weight",
    ):
        load_pretrained(hf_dir)


def test_index_naming_a_missing_shard(tmp_path, params):
    out = save_pretrained(CONFIG, params, tmp_path / "sharded", max_shard_size="100KB")
    shard = sorted(out.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with _raises(WeightsError, shard, "does not exist"):
        load_pretrained(out)


def test_directory_without_safetensors(hf_dir):
    (hf_dir / "model.safetensors").rename(hf_dir / "pytorch_model.bin")
    with _raises(WeightsError, hf_dir, "no model.safetensors", "pytorch_model.bin"):
        load_pretrained(hf_dir)


# ---------------------------------------------------------------------------- GGUF files


def test_gguf_with_unsupported_tensor_type(tmp_path, params):
    raw = np.zeros((CONFIG.hidden_size, CONFIG.intermediate_size // 256 * 176), np.uint8)
    path = _gguf(
        tmp_path,
        params,
        drop=("blk.1.ffn_down.weight",),
        extra_tensors={"blk.1.ffn_down.weight": (raw, Q.Q5_K)},
    )
    with _raises(WeightsError, path, "blk.1.ffn_down.weight", "Q5_K", "supported"):
        load_pretrained(path)


def test_gguf_with_unsupported_architecture(tmp_path, params):
    path = _gguf(tmp_path, params, arch="gemma")
    with _raises(ModelConfigError, path, "unsupported GGUF architecture", "gemma"):
        load_pretrained(path)


def test_gguf_with_missing_tensor(tmp_path, params):
    path = _gguf(tmp_path, params, drop=("blk.1.attn_v.weight",))
    with _raises(WeightsError, path, "missing tensors (1): blk.1.attn_v.weight"):
        load_pretrained(path)


def test_gguf_with_wrong_shape(tmp_path, params):
    wrong = np.zeros((CONFIG.hidden_size, 7), np.float32)  # GGUF dims [7, 32]
    path = _gguf(
        tmp_path,
        params,
        drop=("blk.0.attn_k.weight",),
        extra_tensors={"blk.0.attn_k.weight": (wrong.T.copy(), None)},
    )
    with _raises(WeightsError, path, "blk.0.attn_k.weight", "shape (7, 32)", "(16, 32)"):
        load_pretrained(path)


def test_truncated_gguf(tmp_path, params):
    path = _gguf(tmp_path, params)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with _raises(WeightsError, path, "truncated"):
        load_pretrained(path)


def test_gguf_rope_freqs_that_are_not_llama3(tmp_path, params):
    freqs = np.asarray([1.0, 3.0, 1.0, 5.0], np.float32)
    path = _gguf(tmp_path, params, extra_tensors={"rope_freqs.weight": (freqs, Q.F32)})
    with _raises(ModelConfigError, path, "rope_freqs.weight"):
        load_pretrained(path)


# ---------------------------------------------------------------------------- export, assets


def test_export_refuses_to_clobber_a_directory(tmp_path, params):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("keep me")
    with _raises(WeightsError, tmp_path / "out", "not empty"):
        save_pretrained(CONFIG, params, tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").read_text() == "keep me"


def test_failed_export_leaves_nothing_behind(tmp_path, params):
    broken = {**params, "layers": {k: v for k, v in params["layers"].items() if k != "w_up"}}
    with pytest.raises(WeightsError, match="layers/w_up"):
        save_pretrained(CONFIG, broken, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_export_with_a_directory_lacking_tokenizer_files(tmp_path, params):
    (tmp_path / "tok").mkdir()
    with _raises(WeightsError, tmp_path / "tok", "no tokenizer files"):
        save_pretrained(CONFIG, params, tmp_path / "out", tokenizer_dir=tmp_path / "tok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


def test_missing_default_asset_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONA_JAX_CACHE", str(tmp_path))
    for get in (default_model_dir, default_gguf_path):
        with _raises(AssetError, tmp_path, "python -m persona_jax.assets fetch"):
            get()
