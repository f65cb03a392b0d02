"""The distilled judge: records, cached features, head training, save/load, jitted forward.

A tiny random base model and a word-level tokenizer keep every test to seconds; the shipped
judge is checked against the real base's shape (and run on it when the asset is present).
"""

import dataclasses
import json
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from persona_jax.data.release_labels import LabelledLine
from persona_jax.judges import features as ft
from persona_jax.judges.data import JudgeRecord, half_of, history_window, record_from_line
from persona_jax.judges.distilled import (
    JudgeConfig,
    check_base,
    head_logits,
    init_head,
    judge_backbone,
    judge_probs,
    load_judge,
    save_judge,
    truncate_backbone,
)
from persona_jax.judges.distilled import features as judge_features
from persona_jax.judges.lora import LORA_FILE, load_lora
from persona_jax.judges.train_head import (
    HeadConfig,
    LabelledFeatures,
    merge_heads,
    predict,
    train_head,
)
from persona_jax.metrics.agreement import cohen_kappa
from persona_jax.models.llama import Llama, LlamaConfig

CFG = LlamaConfig(
    vocab_size=1000,
    hidden_size=32,
    intermediate_size=64,
    num_layers=4,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
)
SHIPPED = Path(__file__).resolve().parents[1] / "persona_jax" / "judges" / "shipped"
SHIPPED_EVAL = SHIPPED.with_name("shipped_eval")


class WordTokenizer:
    """One id per whitespace-separated word (ids 3..999); pad id 0."""

    def encode(self, text: str) -> list[int]:
        return [3 + (sum(map(ord, w)) % 997) for w in text.split()] or [1]


@pytest.fixture(scope="module")
def base():
    return CFG, Llama(CFG, rngs=nnx.Rngs(0)).params()


def _line(history, index, prompt=1, idx=None):
    return LabelledLine(
        task="therapy",
        role="patient",
        speaker=2,
        speaker_name="Ann",
        persona="a quiet baker who hates mornings",
        persona_id="p1",
        dialogue_id="f.json#0",
        source="f.json",
        line_index=index,
        history=tuple(history),
        line="I love mornings",
        prompt_label=prompt,
        index_label=idx,
        conflict_indices=None,
        polarity="yes_inconsistent",
    )


def _records(n, seed=0):
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
    say = lambda k: " ".join(rng.choice(words, k))
    return [
        JudgeRecord(
            key=f"d#{i}:3",
            task="chatting",
            split="train",
            source="s.json",
            persona_id="p",
            group="p",
            persona=say(int(rng.integers(3, 12))),
            history=tuple((bool(j % 2), say(int(rng.integers(2, 8)))) for j in range(3)),
            line=say(int(rng.integers(2, 9))),
            label_p2l=int(rng.integers(2)),
            label_l2l=None if i % 3 == 0 else int(rng.integers(2)),
        )
        for i in range(n)
    ]


# ---------------------------------------------------------------------------- records


def test_history_window_marks_own_lines_and_strips_names():
    hist = ["Ann: hi", "Bob: hello there", "Ann: how are you", "Bob: fine: thanks"]
    line = _line(hist, index=4)  # Ann speaks lines 0, 2, 4
    assert history_window(line, 3) == (
        (False, "hello there"),
        (True, "how are you"),
        (False, "fine: thanks"),
    )
    assert history_window(line, 0) == ()
    rec = record_from_line(_line(hist, 4, prompt=None, idx=0), "validation", "p1")
    assert (rec.label_p2l, rec.label_l2l, rec.split, rec.key) == (
        None,
        0,
        "validation",
        "f.json#0:4",
    )
    with pytest.raises(ValueError, match="unknown split"):
        record_from_line(line, "dev", "p1")
    assert {half_of(f"g{i}") for i in range(20)} == {"A", "B"}


# ---------------------------------------------------------------------------- features


def test_depth_features_match_truncated_judge_features(base):
    cfg, params = base
    tok = WordTokenizer()
    toks = ft.tokenize_records(_records(3), tok, max_len=64, max_history_lines=2)
    arrays = ft._batch_arrays(toks, 4, 64, 0)
    out = ft.depth_features(cfg, params, *arrays, (1, 3))
    assert out.shape == (4, 2, len(ft.POOLS), cfg.hidden_size)
    ids, mask, line_mask, persona_mask = arrays
    assert persona_mask.sum(1)[:3].tolist() == [len(tok.encode(r.persona)) for r in _records(3)]
    for i, k in enumerate((1, 3)):
        bcfg, bb = truncate_backbone(cfg, params, k)
        want = judge_features(bcfg, bb, ids, mask, line_mask)
        got = out[:, i, :2].reshape(4, -1)  # line_mean + last, the default pooling
        np.testing.assert_allclose(got[:3], want[:3], rtol=1e-4, atol=1e-5)
        # every pool, in a judge's own order, from the on-device function
        pools = ("line_max", "persona_mean", "last")
        want = judge_features(bcfg, bb, ids, mask, line_mask, persona_mask, pools)
        got = out[:, i, [ft.POOLS.index(p) for p in pools]].reshape(4, -1)
        np.testing.assert_allclose(got[:3], want[:3], rtol=1e-4, atol=1e-5)


def test_extract_caches_resumes_extends_and_refuses_mismatch(base, tmp_path):
    cfg, params = base
    recs = _records(9)
    kw = dict(depths=(2, 1), max_len=48, max_history_lines=2, batch_size=2, chunk_size=3)
    logs = []
    ft.extract(recs[:7], WordTokenizer(), 0, cfg, params, tmp_path, log=logs.append, **kw)
    chunks = sorted(tmp_path.glob("chunk_*.npz"))
    assert len(chunks) == 3 and not list(tmp_path.glob("*.tmp.npz"))
    stamp = chunks[0].stat().st_mtime_ns
    chunks[1].unlink()  # as if killed before the second chunk was written
    ft.extract(recs[:7], WordTokenizer(), 0, cfg, params, tmp_path, log=logs.append, **kw)
    assert "4/7 records present" in logs[-2] and logs[-1].startswith("chunk 3: 3 records")
    assert chunks[0].stat().st_mtime_ns == stamp
    ft.extract(recs, WordTokenizer(), 0, cfg, params, tmp_path, log=logs.append, **kw)
    assert "7/9 records present" in logs[-2] and logs[-1].startswith("chunk 4: 2 records")
    manifest, cached = ft.load_cache(tmp_path)
    assert manifest["depths"] == [1, 2] and cached["feats"].shape == (9, 2, 4, cfg.hidden_size)
    kept, feats = ft.features_for(recs[::-1], cached)
    assert [r.key for r in kept] == [r.key for r in recs[::-1]]
    arrays = ft._batch_arrays(ft.tokenize_records(recs[-1:], WordTokenizer(), 48, 2), 1, 48, 0)
    fresh = ft.depth_features(cfg, params, *arrays, (1, 2))
    np.testing.assert_allclose(feats[0], np.asarray(fresh[0]), rtol=2e-2, atol=2e-3)
    with pytest.raises(ft.FeatureCacheError, match="max_len"):
        ft.extract(recs, WordTokenizer(), 0, cfg, params, tmp_path, **{**kw, "max_len": 64})


# ---------------------------------------------------------------------------- training


def _separable(n, seed, f=24):
    # One rule for train and validation, invariant to what the head's row normalisation
    # removes (each row's mean and scale): a direction orthogonal to the all-ones vector.
    w = np.random.default_rng(123).normal(size=(f, 2))
    w -= w.mean(axis=0)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f)).astype(np.float32)
    y = (x @ w > 0).astype(np.int32)  # scale-free: the head normalises each feature row
    y[rng.random(n) < 0.2, 1] = -1  # unknown line-to-line labels are masked out
    return LabelledFeatures(x, y, np.asarray(["chatting"] * n))


def test_training_reduces_loss_and_separates(tmp_path):
    jc = JudgeConfig(num_layers=2, hidden=32, base_hidden_size=12)
    hc = HeadConfig(
        hidden=32, learning_rate=3e-3, dropout=0.0, batch_size=32, epochs=30, patience=30
    )
    train, val = _separable(512, seed=0), _separable(256, seed=1)
    head, log = train_head(hc, jc, train, val, seed=0, ckpt_dir=tmp_path / "ck", progress=False)
    losses = [e["train_loss"] for e in log["epochs"]]
    assert losses[-1] < 0.5 * losses[0]
    p = predict(head, val.x)
    assert cohen_kappa(val.y[:, 0], (p[:, 0] > 0.5).astype(int)) > 0.8
    known = val.y[:, 1] >= 0
    assert cohen_kappa(val.y[known, 1], (p[known, 1] > 0.5).astype(int)) > 0.8
    # the head restored from the checkpoint is the best epoch's
    assert log["best_val_kappa_p2l"] == max(e["val_kappa_p2l"] for e in log["epochs"])
    assert (tmp_path / "ck" / str(log["best_epoch"])).is_dir()


def test_merged_heads_average_logits():
    jc = JudgeConfig(num_layers=2, hidden=8, base_hidden_size=6)
    heads = []
    for i in range(3):
        h = init_head(jc, jax.random.key(i))
        keys = jax.random.split(jax.random.key(10 + i), 3)
        h["norm_scale"] = 1 + 0.1 * jax.random.normal(keys[0], h["norm_scale"].shape)
        h["norm_bias"] = 0.1 * jax.random.normal(keys[1], h["norm_bias"].shape)
        h["w2"] = jax.random.normal(keys[2], h["w2"].shape)
        h["feat_mean"], h["feat_inv_std"] = jnp.full((12,), 0.5), jnp.full((12,), 2.0)
        heads.append(h)
    x = np.random.default_rng(0).normal(size=(5, 12)).astype(np.float32)
    merged = merge_heads(heads)
    assert merged["w1"].shape == (12, 24)
    want = np.mean([np.asarray(head_logits(h, x)) for h in heads], axis=0)
    np.testing.assert_allclose(np.asarray(head_logits(merged, x)), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="feature statistics"):
        merge_heads([heads[0], {**heads[1], "feat_mean": jnp.zeros((12,))}])


# ---------------------------------------------------------------------------- save/load, jit


def test_save_load_round_trip(tmp_path):
    jc = JudgeConfig(
        num_layers=3,
        hidden=16,
        max_len=384,
        base_hidden_size=32,
        base_vocab_size=1000,
        pools=("line_mean", "persona_mean", "line_max"),
    )
    head = init_head(jc, jax.random.key(1))
    assert head["w1"].shape == (3 * 32, 16)
    save_judge(tmp_path / "j", jc, head, extra={"threshold_prompt_to_line": 0.7})
    cfg2, head2 = load_judge(tmp_path / "j")
    assert cfg2 == jc
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), head, head2))
    assert (
        json.loads((tmp_path / "j" / "judge_config.json").read_text())["threshold_prompt_to_line"]
        == 0.7
    )
    with pytest.raises(FileNotFoundError, match=r"head\.safetensors"):
        (tmp_path / "j" / "head.safetensors").unlink()
        load_judge(tmp_path / "j")


def test_judge_forward_jits_and_matches_eager(base):
    cfg, params = base
    jc = JudgeConfig(
        num_layers=2, hidden=16, base_hidden_size=cfg.hidden_size, base_vocab_size=1000
    )
    bcfg, bb = truncate_backbone(cfg, params, jc.num_layers)
    head = init_head(jc, jax.random.key(0))
    head = dict(head, w2=jax.random.normal(jax.random.key(1), head["w2"].shape))
    toks = ft.tokenize_records(_records(4), WordTokenizer(), 48, 2)
    ids, mask, line_mask, persona_mask = ft._batch_arrays(toks, 4, 48, 0)
    eager = judge_probs(bcfg, bb, head, ids, mask, line_mask)
    jitted = jax.jit(judge_probs, static_argnums=0)(bcfg, bb, head, ids, mask, line_mask)
    assert jitted.shape == (4, 2)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-5, atol=1e-6)
    # a judge over all four pools, pools static under jit
    jc4 = dataclasses.replace(jc, pools=ft.POOLS)
    head4 = init_head(jc4, jax.random.key(2))
    probs4 = jax.jit(partial(judge_probs, bcfg, pools=jc4.pools))(
        bb, head4, ids, mask, line_mask, persona_mask
    )
    assert probs4.shape == (4, 2) and bool(jnp.all((probs4 > 0) & (probs4 < 1)))
    with pytest.raises(ValueError, match="persona_mask"):
        judge_probs(bcfg, bb, head4, ids, mask, line_mask, pools=jc4.pools)
    with pytest.raises(ValueError, match="pools"):
        JudgeConfig(pools=("line_mean", "first"))


# ---------------------------------------------------------------------------- shipped judges


SMOLLM2 = dataclasses.replace(
    CFG,
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_layers=30,
    num_heads=9,
    num_kv_heads=3,
    head_dim=64,
)


@pytest.mark.parametrize("where", [SHIPPED, SHIPPED_EVAL], ids=["reward", "eval"])
def test_shipped_judge_loads_fits_base_and_is_small(where):
    jc, head = load_judge(where)
    check_base(jc, SMOLLM2, str(where))
    assert 1 <= jc.num_layers <= SMOLLM2.num_layers
    assert head["w1"].shape == (jc.feature_size, jc.hidden)
    size = sum(p.stat().st_size for p in where.rglob("*") if p.is_file())
    assert size < 20 * 2**20
    raw = json.loads((where / "judge_config.json").read_text())
    for h in ("prompt_to_line", "line_to_line"):
        assert 0.0 < raw[f"threshold_{h}"] < 1.0
    with pytest.raises(ValueError, match="vocab"):
        check_base(jc, CFG, "tiny")
    if jc.lora_rank:  # adapters for every projection of each judge layer, at its rank
        lora = load_lora(where / LORA_FILE)
        for t, ab in lora.items():
            assert ab["a"].shape[0] == ab["b"].shape[0] == jc.num_layers, t
            assert ab["a"].shape[2] == ab["b"].shape[1] == jc.lora_rank, t


def test_shipped_judge_scores_on_the_real_base():
    """End to end on the asset: template ids -> first k base layers -> head, under jit."""
    from persona_jax.assets import AssetError, default_model_dir

    try:
        model_dir = default_model_dir()
    except AssetError:
        pytest.skip("SmolLM2 asset not fetched (python -m persona_jax.assets fetch)")
    from persona_jax.text.tokenizer import Tokenizer
    from persona_jax.weights import load_pretrained

    jc, head = load_judge(SHIPPED)
    tok = Tokenizer.from_pretrained(model_dir)
    base_cfg, params = load_pretrained(model_dir)
    check_base(jc, base_cfg, "asset")
    bcfg, bb = judge_backbone(jc, SHIPPED, base_cfg, params)
    rec = _records(1)[0]
    toks = ft.tokenize_records([rec], tok, jc.max_len, jc.max_history_lines)
    ids, mask, line_mask, persona_mask = ft._batch_arrays(toks, 1, len(toks[0]["ids"]), tok.pad_id)
    probs = jax.jit(partial(judge_probs, bcfg, pools=jc.pools))(
        bb, head, ids, mask, line_mask, persona_mask
    )
    assert probs.shape == (1, 2) and bool(jnp.all((probs >= 0) & (probs <= 1)))
