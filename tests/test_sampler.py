"""Sampler tests on tiny random models (fast); the real-model checks live in
test_smollm2_greedy.py.

The reference for every decode property is the model's plain `forward` over the whole
unpadded sequence, recomputed from scratch at each step: no cache, no padding, no buckets.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from persona_jax.models.llama import Llama, LlamaConfig, init_cache
from persona_jax.models.llama.model import forward
from persona_jax.sampling import (
    Sampler,
    SamplingParams,
    argmax,
    decode_jit,
    decode_slots,
    prefill_jit,
    sample_tokens,
    token_logprobs,
    top_p_keep,
)
from persona_jax.sampling.buckets import batch_bucket, default_length_bucket
from persona_jax.text import Tokenizer, TokenizerError

VOCAB = 64
PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11, 12], [13], [20, 21, 22, 23, 24]]


@pytest.fixture(scope="module")
def model():
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        eos_token_ids=(0,),
    )
    params = Llama(config, rngs=nnx.Rngs(0)).params()
    # Random init (std 0.02) gives near-uniform next-token distributions whose argmax is
    # decided by float noise; sharpen them so greedy decoding is well defined.
    params = jax.tree.map(lambda p: p * 20.0 if p.ndim >= 2 else p, params)
    return config, params


@pytest.fixture(scope="module")
def sampler(model):
    config, params = model
    return Sampler(config, params)


_forward = jax.jit(forward, static_argnums=0)


def reference_logits(config, params, seqs: list[list[int]]) -> list[np.ndarray]:
    """Full-forward logits, no cache and no left padding: row i, position j holds the
    next-token logits after seqs[i][: j + 1].

    One causal forward gives every prefix at once; rows are right-padded to a fixed width,
    which cannot change earlier positions, so one compiled shape serves every test.
    """
    width = 64
    assert max(map(len, seqs)) <= width
    batch = np.zeros((len(seqs), width), np.int32)
    for i, seq in enumerate(seqs):
        batch[i, : len(seq)] = seq
    logits = np.asarray(_forward(config, params, jnp.asarray(batch))[0])
    return [logits[i, : len(seq)] for i, seq in enumerate(seqs)]


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


# ------------------------------------------------------------------ decode vs full forward


def test_unrolled_layer_loop_gives_the_same_tokens_and_logprobs(model, sampler):
    config, params = model
    sp = SamplingParams(temperature=0.0, max_new_tokens=6)
    rolled = sampler.generate(PROMPTS, sp)
    unrolled = Sampler(config.replace(scan_unroll=2), params).generate(PROMPTS, sp)
    assert unrolled.tokens == rolled.tokens
    np.testing.assert_allclose(
        np.concatenate(unrolled.logprobs), np.concatenate(rolled.logprobs), atol=1e-5
    )
    with pytest.raises(ValueError, match="scan_unroll"):
        config.replace(scan_unroll=0)


def test_greedy_with_cache_matches_full_recompute(model, sampler):
    config, params = model
    n = 8
    gen = sampler.generate(PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=n))
    assert gen.prompt_bucket == 16 and gen.batch_bucket == 4
    refs = reference_logits(
        config, params, [p + t for p, t in zip(PROMPTS, gen.tokens, strict=True)]
    )
    for prompt, tokens, logprobs, ref in zip(PROMPTS, gen.tokens, gen.logprobs, refs, strict=True):
        assert len(tokens) == n
        for step in range(n):
            row = ref[len(prompt) - 1 + step]
            top2 = np.sort(row)[-2:]
            assert top2[1] - top2[0] > 1e-3, "near-tie in the reference: pick another seed"
            assert tokens[step] == int(np.argmax(row)), f"prompt {prompt} step {step}"
            np.testing.assert_allclose(logprobs[step], log_softmax(row)[tokens[step]], atol=1e-4)


def test_logprobs_are_raw_model_logprobs_when_sampling(model, sampler):
    """With temperature/top-k the returned log-probs are still the unfiltered T=1 ones."""
    config, params = model
    sp = SamplingParams(temperature=1.7, top_k=5, max_new_tokens=6)
    gen = sampler.generate(PROMPTS, sp, rng=3)
    assert all(len(t) == 6 for t in gen.tokens)
    refs = reference_logits(
        config, params, [p + t for p, t in zip(PROMPTS, gen.tokens, strict=True)]
    )
    for prompt, tokens, logprobs, ref in zip(PROMPTS, gen.tokens, gen.logprobs, refs, strict=True):
        for step, (tok, lp) in enumerate(zip(tokens, logprobs, strict=True)):
            row = ref[len(prompt) - 1 + step]
            np.testing.assert_allclose(lp, log_softmax(row)[tok], atol=1e-4)


@pytest.mark.parametrize(
    "sp",
    [
        SamplingParams(temperature=2.0, top_k=3, max_new_tokens=10),
        SamplingParams(temperature=2.0, top_p=0.5, max_new_tokens=10),
        SamplingParams(temperature=2.0, top_k=6, top_p=0.6, max_new_tokens=10),
    ],
    ids=["top_k", "top_p", "top_k+top_p"],
)
def test_filters_end_to_end_stay_in_allowed_set(model, sampler, sp):
    config, params = model
    gen = sampler.generate(PROMPTS, sp, rng=11)
    refs = reference_logits(
        config, params, [p + t for p, t in zip(PROMPTS, gen.tokens, strict=True)]
    )
    for prompt, tokens, ref in zip(PROMPTS, gen.tokens, refs, strict=True):
        for step, tok in enumerate(tokens):
            row = ref[len(prompt) - 1 + step] / sp.temperature
            allowed = allowed_set(row, sp.top_k, sp.top_p, tol=1e-4)
            assert tok in allowed, f"step {step}: token {tok} outside {sorted(allowed)}"


def test_decode_commits_every_token_for_multi_turn_appends(model):
    """After decode (commit_last=True) the cache holds prompt + all generated tokens, so a
    partner turn appended with prefill sees exactly the unpadded conversation."""
    config, params = model
    b, t, n = len(PROMPTS), 16, 6
    tokens = np.zeros((b, t), np.int32)
    mask = np.zeros((b, t), bool)
    for i, p in enumerate(PROMPTS):
        tokens[i, t - len(p) :], mask[i, t - len(p) :] = p, True
    partner = np.array([[30, 31, 32]] * b, np.int32)
    cache = init_cache(config, b, t + decode_slots(n) + partner.shape[1])
    cache, logits = prefill_jit(config, params, cache, tokens, mask)
    # Stop on 2 of the likely tokens and give rows different limits: ragged lengths.
    sp = SamplingParams(temperature=0.0, max_new_tokens=n)
    limits = jnp.array([6, 2, 4, 1], jnp.int32)
    cache, out = decode_jit(config, params, cache, logits, jax.random.key(0), sp, limits)
    np.testing.assert_array_equal(np.asarray(out.lengths), [6, 2, 4, 1])
    cache, logits = prefill_jit(config, params, cache, partner)
    gens = [np.asarray(out.tokens[i, : int(out.lengths[i])]).tolist() for i in range(b)]
    seqs = [p + g + partner[i].tolist() for i, (p, g) in enumerate(zip(PROMPTS, gens, strict=True))]
    for i, ref in enumerate(reference_logits(config, params, seqs)):
        np.testing.assert_allclose(np.asarray(logits[i]), ref[-1], atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------ stops and limits


def test_stop_ids_and_per_row_limits(model, sampler):
    n = 8
    free = sampler.generate(PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=n))
    stop_a = free.tokens[0][2]  # row 0 must stop at its first occurrence of this token
    stop_b = free.tokens[1][4]
    limits = [n, n, 3, 0]
    sp = SamplingParams(temperature=0.0, max_new_tokens=n, stop_ids=(stop_a, stop_b))
    gen = sampler.generate(PROMPTS, sp, max_new_tokens=limits)
    for i, ref in enumerate(free.tokens):
        hits = [j for j, tok in enumerate(ref) if tok in (stop_a, stop_b)]
        first_stop = hits[0] + 1 if hits else None
        expect_len = min(first_stop or n, limits[i])
        assert gen.lengths[i] == expect_len, f"row {i}"
        assert gen.tokens[i] == ref[:expect_len]
        assert bool(gen.stopped[i]) == (first_stop is not None and first_stop <= limits[i])
    assert gen.lengths[0] <= 3 and gen.stopped[0]
    assert gen.tokens[3] == [] and gen.lengths[3] == 0
    # A one-step loop (no decode feed at all) still returns the first greedy token.
    one = sampler.generate(PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=1))
    assert one.tokens == [ref[:1] for ref in free.tokens]


def test_decode_output_padding_and_mask(model):
    config, params = model
    b, t, n = 2, 4, 5
    cache = init_cache(config, b, t + n)
    tokens = np.array([[1, 2, 3, 4], [0, 0, 5, 6]], np.int32)
    mask = tokens > 0
    cache, logits = prefill_jit(config, params, cache, tokens, mask)
    sp = SamplingParams(temperature=0.0, max_new_tokens=n)
    _, out = decode_jit(
        config, params, cache, logits, jax.random.key(0), sp, jnp.array([2, 5]), pad_id=63
    )
    assert out.tokens.shape == (b, n) and out.logprobs.shape == (b, n)
    np.testing.assert_array_equal(np.asarray(out.tokens[0, 2:]), [63, 63, 63])
    np.testing.assert_array_equal(np.asarray(out.logprobs[0, 2:]), [0, 0, 0])
    np.testing.assert_array_equal(np.asarray(out.mask), [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    assert not np.asarray(out.stopped).any()


# ------------------------------------------------------------------ compilation and buckets


def test_new_prompt_length_in_same_bucket_does_not_recompile(model):
    config, params = model
    s = Sampler(config, params)
    sp = SamplingParams(temperature=0.0, max_new_tokens=4)
    s.generate([[1] * 5, [2] * 3, [3]], sp)
    assert s.num_compilations == 1
    s.generate([[4] * 9, [5] * 16], sp)  # lengths 9 and 16: bucket 16; batch 2 -> bucket 2
    assert s.num_compilations == 2
    s.generate([[6] * 11, [7] * 2], sp)  # same buckets as the previous call
    s.generate([[8] * 14, [9] * 7], sp, max_new_tokens=[1, 3])  # limits are data, not shape
    s.update_params(jax.tree.map(lambda p: p * 1.01, params))  # new weights, same shapes
    s.generate([[8] * 13], sp)  # batch 1: new batch bucket
    s.generate([[8] * 12], sp)
    assert s.num_compilations == 3
    s.generate([[1] * 17], sp)  # prompt bucket 32
    assert s.num_compilations == 4


def test_buckets():
    assert [default_length_bucket(n) for n in (1, 16, 17, 100, 512, 513, 1100)] == [
        16, 16, 32, 128, 512, 1024, 1536,
    ]  # fmt: skip
    assert [batch_bucket(n) for n in (1, 2, 3, 5, 32, 33)] == [1, 2, 4, 8, 32, 64]
    with pytest.raises(ValueError, match="exceeds the largest"):
        batch_bucket(9, (4, 8))


def test_input_validation(model, sampler):
    sp = SamplingParams(temperature=0.0, max_new_tokens=4)
    with pytest.raises(ValueError, match="empty"):
        sampler.generate([[1, 2], []], sp)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        sampler.generate([[1, VOCAB]], sp)
    with pytest.raises(ValueError, match="max_new_tokens"):
        sampler.generate([[1, 2]], sp, max_new_tokens=5)
    with pytest.raises(ValueError, match="entries"):
        sampler.generate([[1, 2]], sp, max_new_tokens=[1, 2])
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError, match="top_k"):
        SamplingParams(top_k=-2)
    assert SamplingParams(stop_ids=[np.int64(2)]) == SamplingParams(stop_ids=(2,))


# ------------------------------------------------------------------ filters on known distributions


def allowed_set(logits: np.ndarray, top_k: int, top_p: float, tol: float = 0.0) -> set[int]:
    """Tokens a top-k/top-p sampler may emit, computed by sorting (the textbook definition).

    `tol` widens the set at the boundary for comparisons against a cached forward whose
    logits differ from `logits` by float rounding.
    """
    order = np.argsort(-logits, kind="stable")
    keep = len(logits)
    if top_k:
        keep = min(keep, top_k)
    cand = logits[order[:keep]].astype(np.float64)
    if top_p < 1.0:
        probs = np.exp(cand - cand.max())
        probs /= probs.sum()
        before = np.cumsum(probs) - probs
        keep = int(np.sum(before < top_p + tol))
    boundary = logits[order[keep - 1]]
    return {int(i) for i in np.nonzero(logits >= boundary - tol)[0]}


def constructed_logits(vocab: int = 300) -> np.ndarray:
    """A distribution with a known shape: a few large logits, then a long flat tail."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 1.0, vocab).astype(np.float32)
    logits[[7, 123, 299, 42]] = [4.0, 3.5, 3.0, 2.0]
    return logits


def sample_many(logits: np.ndarray, sp: SamplingParams, n: int = 8000) -> np.ndarray:
    batch = jnp.broadcast_to(jnp.asarray(logits), (n, logits.shape[0]))
    fn = jax.jit(sample_tokens, static_argnums=2)
    return np.asarray(fn(batch, jax.random.key(1), sp))


@pytest.mark.parametrize(("top_k", "top_p"), [(0, 1.0), (4, 1.0), (0, 0.7), (3, 0.8), (50, 0.9)])
def test_filter_distribution_on_constructed_logits(top_k, top_p):
    logits = constructed_logits()
    sp = SamplingParams(temperature=1.3, top_k=top_k, top_p=top_p)
    draws = sample_many(logits, sp)
    allowed = allowed_set(logits / sp.temperature, top_k, top_p)
    assert set(draws.tolist()) <= allowed
    # Frequencies follow the renormalised filtered distribution.
    idx = np.array(sorted(allowed))
    z = logits[idx].astype(np.float64) / sp.temperature
    expect = np.exp(z - z.max())
    expect /= expect.sum()
    freq = np.bincount(draws, minlength=logits.shape[0])[idx] / draws.size
    np.testing.assert_allclose(freq, expect, atol=0.02)


def test_top_p_keep_is_the_exact_nucleus():
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 2.0, (6, 1000)).astype(np.float32)
    for p in (0.1, 0.5, 0.9, 0.999):
        w = jnp.exp(logits - logits.max(-1, keepdims=True))
        keep = np.asarray(jax.jit(top_p_keep, static_argnums=1)(w, p))
        for row in range(logits.shape[0]):
            assert set(np.nonzero(keep[row])[0].tolist()) == allowed_set(logits[row], 0, p)


def test_argmax_first_index_on_ties_and_odd_vocab():
    x = np.zeros((3, 301), np.float32)
    x[0, [5, 200]] = 1.0  # tie across chunks: first index wins
    x[1, [17, 18]] = 2.0  # tie inside one chunk
    x[2, 300] = 0.5  # maximum in the padded last chunk
    np.testing.assert_array_equal(np.asarray(argmax(jnp.asarray(x))), [5, 17, 300])


def test_token_logprobs():
    x = np.random.default_rng(0).normal(0, 3, (4, 77)).astype(np.float32)
    toks = np.array([0, 5, 76, 30])
    got = np.asarray(token_logprobs(jnp.asarray(x), jnp.asarray(toks)))
    want = [log_softmax(x[i])[toks[i]] for i in range(4)]
    np.testing.assert_allclose(got, want, atol=1e-5)


# ------------------------------------------------------------------ tokenizer


def build_tiny_tokenizer(path) -> None:
    """A word-level ChatML tokenizer saved like a Hugging Face model directory."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>", "system", "user"]
    words += ["assistant", "you", "are", "a", "nurse", "hello", "there"]
    tok = HFTokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece()
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    hf.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    hf.save_pretrained(str(path))


def test_tokenizer_chat_template_and_stop_ids(tmp_path, model):
    build_tiny_tokenizer(tmp_path)
    tok = Tokenizer.from_pretrained(tmp_path)
    msgs = [
        {"role": "system", "content": "you are a nurse"},
        {"role": "user", "content": "hello there"},
    ]
    # <|im_start|>=1 system=4 you are a nurse=7..10 <|im_end|>=2 user=5 hello there=11,12
    assert tok.apply_chat_template(msgs) == [1, 4, 7, 8, 9, 10, 2, 1, 5, 11, 12, 2, 1, 6]
    assert tok.apply_chat_template(msgs, add_generation_prompt=False)[-1] == 2
    assert tok.eos_ids == (0,)
    assert set(tok.stop_ids) == {0, 2}  # eos plus the ChatML end-of-turn marker
    assert tok.pad_id == 0 and tok.vocab_size == 13
    assert tok.encode("hello there you") == [11, 12, 7]
    assert tok.decode([11, 12]) == "hello there"

    config, params = model
    gen = Sampler(config, params, tok).chat([msgs], SamplingParams(temperature=0.0))
    assert gen.texts is not None and len(gen.texts) == 1
    assert len(gen.tokens[0]) == gen.lengths[0] >= 1


def test_tokenizer_errors(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer files"):
        Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(TokenizerError, match="not a directory"):
        Tokenizer.from_pretrained(tmp_path / "missing")


# ------------------------------------------------------------------ benchmark CLI


def test_bench_cli_end_to_end_on_a_tiny_model(tmp_path, model, capsys):
    import json

    from persona_jax.bench.__main__ import main
    from persona_jax.weights import save_pretrained

    config, params = model
    save_pretrained(config, params, tmp_path / "tiny")
    argv = ["sampler", "--model_dir", str(tmp_path / "tiny"), "--batch", "2"]
    argv += ["--prompt_len", "5", "--new_tokens", "3", "--repeats", "1"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["batch"] == 2 and result["new_tokens"] == 3 and result["prompt_len"] == 5
    assert result["ours_tok_s"] > 0 and result["baseline_tok_s"] > 0
    assert result["ratio"] == pytest.approx(
        result["ours_tok_s"] / result["baseline_tok_s"], rel=1e-2
    )
    assert result["token_agreement"] == 1.0  # same weights, greedy, no near-ties here
    assert main(["nonsense"]) == 2
