"""Adapter judges: LoRA merge, the token pack, end-to-end fine-tuning, save/load, on-device use.

Tiny random base and a word-level tokenizer: seconds on a CPU.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from persona_jax.judges import features as feat
from persona_jax.judges.data import JudgeRecord
from persona_jax.judges.distilled import (
    JudgeConfig,
    judge_backbone,
    judge_probs,
    load_judge,
    save_judge,
    truncate_backbone,
)
from persona_jax.judges.finetune import FinetuneConfig, finetune, probs_of, rows_of
from persona_jax.judges.lora import LORA_FILE, init_lora, load_lora, merge_lora, save_lora
from persona_jax.judges.pack import Pack, pack_records
from persona_jax.metrics.agreement import cohen_kappa
from persona_jax.models.llama import Llama, LlamaConfig

CFG = LlamaConfig(
    vocab_size=1000,
    hidden_size=32,
    intermediate_size=64,
    num_layers=3,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
)
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "eta", "theta", "iota", "kappa"]


class WordTokenizer:
    """One id per whitespace-separated word (ids 3..999); pad id 0."""

    pad_id = 0
    vocab_size = 1000

    def encode(self, text: str) -> list[int]:
        return [3 + (sum(map(ord, w)) % 997) for w in text.split()] or [1]


@pytest.fixture(scope="module")
def base():
    return CFG, Llama(CFG, rngs=nnx.Rngs(0)).params()


def _records(n: int, split: str, seed: int) -> list[JudgeRecord]:
    """A line is inconsistent (both labels) exactly when it says "zeta" while the persona
    says "omega": a rule that needs the line and the persona together."""
    rng = np.random.default_rng(seed)
    say = lambda k: " ".join(rng.choice(WORDS, k))
    out = []
    for i in range(n):
        omega, zeta = bool(rng.integers(2)), bool(rng.integers(2))
        persona = say(int(rng.integers(3, 8))) + (" omega" if omega else " nu")
        line = say(int(rng.integers(2, 6))) + (" zeta" if zeta else " rho")
        group = f"g{i % 7}"
        out.append(
            JudgeRecord(
                key=f"{split}{i}:1",
                task="chatting",
                split=split,
                source="doubt.json" if i % 10 == 9 else "s.json",
                persona_id=f"p{i % 7}",
                group=group,
                persona=persona,
                history=((False, say(3)),),
                line=line,
                label_p2l=int(omega and zeta),
                label_l2l=None if i % 4 == 0 else int(omega and zeta),
            )
        )
    return out


@pytest.fixture(scope="module")
def pack():
    recs = _records(320, "train", 0) + _records(96, "validation", 1)
    return pack_records(recs, WordTokenizer(), 48, 2, {"tokenizer": "words", "vocab_size": 1000})


def test_fresh_adapters_are_the_backbone_and_merge_is_w_plus_scaled_ab(base):
    cfg, params = base
    _, bb = truncate_backbone(cfg, params, 2)
    lora = init_lora(bb["layers"], 4, jax.random.key(1))
    merged = merge_lora(bb, lora, 2.0)
    for t in lora:
        np.testing.assert_array_equal(merged["layers"][t], bb["layers"][t])
    lora["wq"]["b"] = jax.random.normal(jax.random.key(2), lora["wq"]["b"].shape)
    merged = merge_lora(bb, lora, 0.5)
    want = bb["layers"]["wq"][1] + 0.5 * lora["wq"]["a"][1] @ lora["wq"]["b"][1]
    np.testing.assert_allclose(merged["layers"]["wq"][1], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(merged["layers"]["wk"], bb["layers"]["wk"])
    with pytest.raises(ValueError, match="not backbone projections"):
        init_lora(bb["layers"], 4, jax.random.key(1), targets=("w_nope",))
    bad = {"wq": {"a": lora["wq"]["a"][:, :5], "b": lora["wq"]["b"]}}
    with pytest.raises(ValueError, match="do not fit"):
        merge_lora(bb, bad, 1.0)


def test_pack_round_trip_matches_the_feature_pipeline_layout(pack, tmp_path):
    loaded = Pack.load(pack.save(tmp_path / "p.npz"))
    assert len(loaded) == len(pack) == 416
    np.testing.assert_array_equal(loaded.tokens, pack.tokens)
    assert loaded.meta["pad_id"] == 0 and loaded.meta["max_len"] == 48
    toks = feat.tokenize_records(_records(4, "train", 0), WordTokenizer(), 48, 2)
    want = feat._batch_arrays(toks, 6, 48, 0)
    got = loaded.arrays([0, 1, 2, 3], 48, 0, batch=6)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="tokens > length"):
        loaded.arrays([0], 4, 0)
    with pytest.raises(FileNotFoundError, match="no judge pack"):
        Pack.load(tmp_path / "missing.npz")


def test_rows_of_splits_halves_and_exclusions(pack):
    train = rows_of(pack, "train")
    assert len(train) == 320 and set(pack.split[train]) == {"train"}
    no_doubt = rows_of(pack, "train", exclude=["doubt.json"])
    assert len(no_doubt) == 288
    a, b = rows_of(pack, "train", "half_a"), rows_of(pack, "train", "half_b")
    assert len(a) + len(b) == 320 and set(pack.half[a]) == {"A"} and set(pack.half[b]) == {"B"}
    with pytest.raises(ValueError, match="train_on"):
        rows_of(pack, "train", "half_c")


def test_finetune_learns_a_persona_line_rule_and_ships_the_same_function(base, pack, tmp_path):
    cfg, params = base
    bcfg, bb = truncate_backbone(cfg, params, 2)
    ft = FinetuneConfig(
        rank=4,
        alpha=8.0,
        lr_lora=1e-2,
        lr_head=3e-3,
        dropout=0.0,
        batch_size=16,
        epochs=8,
        patience=8,
        warmup_steps=5,
        hidden=32,
        bucket=16,
    )
    jc = JudgeConfig(
        num_layers=2,
        hidden=32,
        max_len=48,
        max_history_lines=2,
        base_model="tiny",
        base_vocab_size=1000,
        base_hidden_size=32,
        pools=("line_mean", "last", "persona_mean", "line_max"),
        lora_rank=4,
        lora_alpha=8.0,
    )
    train, val = rows_of(pack, "train"), rows_of(pack, "validation")
    trainable, stats, log = finetune(
        ft, jc, bcfg, bb, pack, train, val, seed=0, ckpt_dir=tmp_path / "ck", progress=False
    )
    assert log["best_val_kappa_p2l"] > 0.6, log["epochs"]
    assert float(jnp.abs(trainable["lora"]["w_up"]["b"]).max()) > 0  # the adapters trained
    p = probs_of(bcfg, bb, trainable, stats, 2.0, pack, val, jc.pools, batch_size=16, bucket=16)
    y = pack.y[val, 0]
    assert cohen_kappa(y, (p[:, 0] >= 0.5).astype(int)) > 0.5
    # Saved, loaded and merged the way the RL step gets it: the same probabilities, jitted.
    head = {**trainable["head"], **stats}
    save_judge(tmp_path / "j", jc, head, lora=trainable["lora"])
    jc2, head2 = load_judge(tmp_path / "j")
    assert (jc2.lora_rank, jc2.lora_scale) == (4, 2.0)
    bcfg2, merged = judge_backbone(jc2, tmp_path / "j", cfg, params)
    fn = jax.jit(lambda bb, h, *a: judge_probs(bcfg2, bb, h, *a, pools=jc2.pools))
    arrays = pack.arrays(val[:16], 48, 0)
    np.testing.assert_allclose(fn(merged, head2, *arrays), p[:16], rtol=1e-4, atol=1e-5)
    # A head-only save over the same directory drops the stale adapters.
    save_judge(tmp_path / "j", dataclasses.replace(jc, lora_rank=0), head)
    assert not (tmp_path / "j" / LORA_FILE).exists()


def test_judge_backbone_errors(base, tmp_path):
    cfg, params = base
    jc = JudgeConfig(num_layers=2, base_vocab_size=1000, base_hidden_size=32, lora_rank=4)
    with pytest.raises(FileNotFoundError, match=LORA_FILE):
        judge_backbone(jc, tmp_path, cfg, params)
    _, bb = truncate_backbone(cfg, params, 2)
    save_lora(tmp_path / LORA_FILE, init_lora(bb["layers"], 8, jax.random.key(0)))
    with pytest.raises(ValueError, match="adapter ranks"):
        judge_backbone(jc, tmp_path, cfg, params)
    assert set(load_lora(tmp_path / LORA_FILE)) == {
        "wq",
        "wk",
        "wv",
        "wo",
        "w_gate",
        "w_up",
        "w_down",
    }
    with pytest.raises(ValueError, match="adapters given"):
        save_judge(tmp_path / "x", jc, {}, lora=None)
    with pytest.raises(ValueError, match="lora_rank must be"):
        JudgeConfig(lora_rank=-1)


def test_finetune_run_selects_on_validation_scores_test_once_and_exports(base, tmp_path):
    """The whole `--mode=finetune` run on a saved tiny model and a pack: one judge per
    training set, written in the shipped layout with its metrics, loadable as the RL loads it."""
    import json
    import sys
    from pathlib import Path

    from persona_jax.judges.distill_lora import run_finetune
    from persona_jax.weights import save_pretrained

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from configs.judge import get_config

    cfg, params = base
    save_pretrained(cfg, params, tmp_path / "model")
    recs = _records(160, "train", 0) + _records(48, "validation", 1) + _records(48, "test", 2)
    tok = WordTokenizer()
    pack_records(recs, tok, 48, 2, {"tokenizer": "words", "vocab_size": 1000}).save(
        tmp_path / "pack.npz"
    )
    c = get_config()
    c.model_path = str(tmp_path / "model")
    c.finetune.pack = str(tmp_path / "pack.npz")
    c.finetune.out_dir = str(tmp_path / "run")
    c.finetune.num_layers = 2
    c.finetune.export = {"all": str(tmp_path / "reward")}  # half_b goes under out_dir
    c.finetune.defaults.update(
        dict(rank=4, alpha=8.0, hidden=32, batch_size=16, epochs=2, bucket=16, lr_lora=1e-2)
    )
    c.finetune.sweep.all = c.finetune.sweep.half_b = ({}, {"lr_lora": 1e-3})
    c.data.exclude_doubtful = False
    results = run_finetune(c)
    assert [r["train_on"] for r in results["runs"]] == ["all", "all", "half_b", "half_b"]
    for train_on, where in (("all", tmp_path / "reward"), ("half_b", tmp_path / "run" / "half_b")):
        chosen = results["chosen"][train_on]
        runs = [r for r in results["runs"] if r["train_on"] == train_on]
        assert chosen["name"] == max(runs, key=lambda r: r["val_kappa_p2l"])["name"]
        assert chosen["test"]["all"]["prompt_to_line"]["n"] == 48
        jc, _ = load_judge(where)
        assert jc.lora_rank == 4 and (where / LORA_FILE).is_file()
        assert json.loads((where / "metrics.json").read_text())["judge"]["name"] == chosen["name"]
        judge_backbone(jc, where, cfg, params)
    assert (tmp_path / "run" / "results.json").is_file()


def test_candidates_per_training_set():
    from configs.judge import get_config
    from persona_jax.judges.distill_lora import candidates

    assert candidates(({}, {"rank": 8}), "half_b") == ({}, {"rank": 8})
    sweep = get_config().finetune.sweep
    assert candidates(sweep, "half_b") == ({},)
    assert {"rank": 32, "alpha": 64.0} in candidates(sweep, "all")
    with pytest.raises(ValueError, match="no candidates for 'half_c'"):
        candidates(sweep, "half_c")
    with pytest.raises(ValueError, match="is empty"):
        candidates({"all": ()}, "all")


def test_distill_judge_default_mode_fine_tunes_from_an_existing_pack(base, tmp_path):
    """`python distill_judge.py --config=configs/judge.py` with no mode: the pack exists, so it
    is read, not rebuilt (rebuilding needs the release), and the adapter judges are written."""
    import subprocess
    import sys
    from pathlib import Path

    from persona_jax.weights import save_pretrained

    root = Path(__file__).resolve().parents[1]
    cfg, params = base
    save_pretrained(cfg, params, tmp_path / "model")
    recs = _records(64, "train", 0) + _records(32, "validation", 1) + _records(32, "test", 2)
    meta = {"tokenizer": "words", "vocab_size": 1000}
    pack_path = pack_records(recs, WordTokenizer(), 48, 2, meta).save(tmp_path / "pack.npz")
    before = pack_path.stat().st_mtime_ns
    overrides = {
        "model_path": tmp_path / "model",
        "data_dir": tmp_path / "no_release_here",
        "finetune.pack": pack_path,
        "finetune.out_dir": tmp_path / "run",
        "finetune.export.all": tmp_path / "reward",
        "finetune.export.half_b": tmp_path / "eval",
        "finetune.num_layers": 2,
        "finetune.defaults.rank": 2,
        "finetune.defaults.hidden": 16,
        "finetune.defaults.batch_size": 16,
        "finetune.defaults.epochs": 1,
        "finetune.defaults.bucket": 16,
        "finetune.sweep.all": "({},)",  # the reward judge's sweep, cut to the defaults
        "data.exclude_doubtful": False,
    }
    cmd = [sys.executable, "distill_judge.py", "--config=configs/judge.py"]
    cmd += [f"--config.{k}={v}" for k, v in overrides.items()]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert pack_path.stat().st_mtime_ns == before
    for where in (tmp_path / "reward", tmp_path / "eval"):
        jc, _ = load_judge(where)
        assert jc.num_layers == 2 and jc.lora_rank == 2 and (where / LORA_FILE).is_file()
