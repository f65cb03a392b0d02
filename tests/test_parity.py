"""Hugging Face import/export parity against `transformers`' own PyTorch models.

Tiny random models of each supported family (Llama with Llama-3 RoPE scaling, Qwen2 with
query/key/value biases tied and untied, Mistral with a sliding window shorter than the
sequence) are saved by `transformers`, loaded by us, and must give the same logits on
left-padded batches; our export must load back into `transformers` with no missing or
unexpected keys and round-trip bit for bit.
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import forward
from persona_jax.weights import load_model, load_pretrained, save_pretrained
from persona_jax.weights.names import ParamBuilder, check_table, params_to_hf

VOCAB, SEQ = 96, 12
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    bos_token_id=1,
    eos_token_id=2,
    attn_implementation="eager",
)
FAMILIES = {
    # original context 16 < SEQ positions x wavelengths: all three RoPE bands are exercised.
    "llama3-rope": lambda: transformers.LlamaConfig(
        **COMMON,
        rms_norm_eps=1e-5,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 10000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    ),
    "qwen2-untied": lambda: transformers.Qwen2Config(**COMMON, tie_word_embeddings=False),
    "qwen2-tied": lambda: transformers.Qwen2Config(**COMMON, tie_word_embeddings=True),
    "mistral-window": lambda: transformers.MistralConfig(**COMMON, sliding_window=4),
}


def _torch_model(family: str) -> transformers.PreTrainedModel:
    """A tiny model with every weight random (biases and norms too, not their zero/one init)."""
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(FAMILIES[family]()).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn_like(p)
            p.copy_(1.0 + 0.1 * noise if "norm" in name else 0.15 * noise)
    return model


def _batch() -> tuple[np.ndarray, np.ndarray]:
    """Random tokens [3, SEQ]; row 0 unpadded, rows 1 and 2 left-padded by 3 and 7."""
    tokens = np.random.default_rng(0).integers(0, VOCAB, size=(3, SEQ))
    mask = np.ones((3, SEQ), bool)
    mask[1, :3] = False
    mask[2, :7] = False
    return tokens, mask


def _torch_logits(model: transformers.PreTrainedModel, tokens: np.ndarray, mask: np.ndarray):
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    with torch.no_grad():
        out = model(
            torch.tensor(tokens),
            attention_mask=torch.tensor(mask.astype(np.int64)),
            position_ids=torch.tensor(positions),
        )
    return out.logits.numpy()


def _state(model: transformers.PreTrainedModel) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _tree_equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_tree_equal(a[k], b[k]) for k in a)
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_logits_match_transformers(family, tmp_path):
    model = _torch_model(family)
    model.save_pretrained(tmp_path / "hf")
    config, params = load_pretrained(tmp_path / "hf")
    check_table(config)
    assert config.model_type == model.config.model_type
    if family == "mistral-window":
        assert config.sliding_window == 4 < SEQ

    tokens, mask = _batch()
    ref = _torch_logits(model, tokens, mask)
    ours, _ = forward(config, params, jnp.asarray(tokens), token_mask=jnp.asarray(mask))
    diff = np.abs(np.asarray(ours) - ref)[mask]
    assert diff.max() <= 1e-4, f"{family}: max |logit diff| {diff.max():.2e}"
    assert np.abs(ref).max() > 1.0  # the comparison is not between near-zero logits

    # Guard against a vacuous pass: a wrong attention mask must show up in the logits.
    no_pad, _ = forward(config, params, jnp.asarray(tokens))
    assert np.abs(np.asarray(no_pad) - ref)[2][mask[2]].max() > 1e-3


@pytest.mark.parametrize("family", ["llama3-rope", "qwen2-tied"])
def test_export_roundtrip(family, tmp_path):
    model = _torch_model(family)
    model.save_pretrained(tmp_path / "hf")
    config, params = load_pretrained(tmp_path / "hf")

    save_pretrained(config, params, tmp_path / "ours")
    files = sorted(p.name for p in (tmp_path / "ours").iterdir())
    assert files == ["config.json", "generation_config.json", "model.safetensors"]
    reloaded, info = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "ours", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"] and not info["error_msgs"]
    want, got = _state(model), _state(reloaded)
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)

    config2, params2 = load_pretrained(tmp_path / "ours")
    assert config2 == config
    assert _tree_equal(params2, params)


def test_sharded_export_loads_in_transformers(tmp_path):
    model = _torch_model("qwen2-untied")
    model.save_pretrained(tmp_path / "hf")
    config, params = load_pretrained(tmp_path / "hf")
    save_pretrained(config, params, tmp_path / "sharded", max_shard_size="20KB")

    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2
    assert shards == sorted(p.name for p in (tmp_path / "sharded").glob("model-*.safetensors"))
    n_shards = len(shards)
    assert all(s.endswith(f"-of-{n_shards:05d}.safetensors") for s in shards)
    reloaded, info = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "sharded", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    for name, value in _state(model).items():
        np.testing.assert_array_equal(_state(reloaded)[name], value, err_msg=name)
    assert _tree_equal(load_pretrained(tmp_path / "sharded")[1], params)


def test_bfloat16_export_and_load(tmp_path):
    model = _torch_model("llama3-rope")
    model.save_pretrained(tmp_path / "hf")
    config, params = load_pretrained(tmp_path / "hf", dtype="bfloat16")
    assert config.param_dtype == config.dtype == "bfloat16"
    assert params["layers"]["wq"].dtype == jnp.bfloat16

    save_pretrained(config, params, tmp_path / "bf16")
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "bf16")
    for name, value in model.state_dict().items():
        got = reloaded.state_dict()[name]
        assert got.dtype == torch.bfloat16, name
        assert torch.equal(got, value.to(torch.bfloat16)), name  # same round-to-nearest-even


def test_tokenizer_files_and_chat_template_are_copied(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{c: 3 + i for i, c in enumerate("abcdefgh")}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    template = "{% for m in messages %}<s>{{ m['role'] }} {{ m['content'] }}</s>{% endfor %}"
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>",
        unk_token="<unk>",
        chat_template=template,
    )
    tok.save_pretrained(tmp_path / "tok")
    model = _torch_model("llama3-rope")
    model.save_pretrained(tmp_path / "hf")
    config, params = load_pretrained(tmp_path / "hf")

    save_pretrained(config, params, tmp_path / "out", tokenizer_dir=tmp_path / "tok")
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    assert loaded.chat_template == template
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (1, 2, 2)
    chat = [{"role": "a", "content": "b c"}]
    assert loaded.apply_chat_template(chat, tokenize=False) == tok.apply_chat_template(
        chat, tokenize=False
    )
    gen = json.loads((tmp_path / "out" / "generation_config.json").read_text())
    assert gen["eos_token_id"] == 2 and gen["bos_token_id"] == 1


def test_load_model_holds_the_loaded_params(tmp_path):
    _torch_model("qwen2-tied").save_pretrained(tmp_path / "hf")
    config, params = load_pretrained(tmp_path / "hf")
    module = load_model(tmp_path / "hf")
    assert module.config == config
    assert _tree_equal(module.params(), params)
    tokens = jnp.asarray(_batch()[0])
    np.testing.assert_array_equal(np.asarray(module(tokens)[0]), forward(config, params, tokens)[0])


def test_names_table_round_trips_every_tensor():
    """HF state -> our layout -> HF state is the identity, for every tensor kind."""
    model = _torch_model("qwen2-untied")
    hf_state = _state(model)
    config = LlamaConfig.from_hf_dict(model.config.to_dict())
    builder = ParamBuilder(config)
    for name, value in hf_state.items():
        builder.put(name, value, source="test")
    params = builder.finish(source="test")
    assert params["layers"]["wq"].shape == (2, 32, 32)  # stacked, [in, out]
    np.testing.assert_array_equal(
        params["layers"]["wk"][1], hf_state["model.layers.1.self_attn.k_proj.weight"].T
    )
    exported = dict(params_to_hf(config, params))
    assert exported.keys() == hf_state.keys()
    for name, value in hf_state.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=name)


def test_tied_checkpoint_with_a_stored_lm_head_loads(tmp_path):
    """Some exporters store lm_head.weight for tied models; like transformers, it is ignored."""
    from safetensors.numpy import load_file, save_file

    _torch_model("qwen2-tied").save_pretrained(tmp_path / "hf")
    _, params = load_pretrained(tmp_path / "hf")
    path = tmp_path / "hf" / "model.safetensors"
    tensors = load_file(path)
    assert "lm_head.weight" not in tensors
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"] + 1.0
    save_file(tensors, path, metadata={"format": "pt"})
    assert _tree_equal(load_pretrained(tmp_path / "hf")[1], params)
