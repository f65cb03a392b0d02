"""Benchmarks end with one JSON line holding both figures and their ratio (tiny shapes)."""

import json

from persona_jax.bench import episode, update


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_update_bench_reports_both_sides(capsys):
    assert (
        update.main(["--model", "tiny", "--batch", "2", "--seq_len", "32", "--repeats", "1"]) == 0
    )
    out = _last_json(capsys)
    assert out["ours_tok_s"] > 0 and out["baseline_tok_s"] > 0
    assert abs(out["ratio"] - out["baseline_s"] / out["ours_s"]) < 1e-9
    assert "PyTorch" in out["baseline"]


def test_episode_bench_matches_token_counts(capsys):
    args = [
        "--model",
        "tiny",
        "--batch",
        "2",
        "--turns",
        "2",
        "--new_tokens",
        "4",
        "--repeats",
        "1",
    ]
    assert episode.main(args) == 0
    out = _last_json(capsys)
    assert [r["turns"] for r in out["rows"]] == [2]
    assert out["ours_tok_s"] > 0 and out["baseline_tok_s"] > 0
    assert out["baseline"] == "re-encode every turn"


def test_decode_bytes_counts_weights_and_each_rows_positions():
    import jax
    import jax.numpy as jnp

    from persona_jax.bench import roofline
    from persona_jax.bench.shapes import bench_model

    cfg, params = bench_model("tiny", real=False, dtype="bfloat16")
    w = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(params))
    # tiny: 2 layers x 2 kv heads x 16 dims, keys and values, 2 bytes each
    kv = 2 * 2 * 2 * 16 * 2
    assert roofline.kv_bytes_per_token(cfg) == kv
    got = roofline.decode_bytes(cfg, params, batch=3, prompt_len=5, steps=4)
    assert got["weight_bytes"] == w
    assert got["min_bytes"] == 4 * w + 3 * kv * (5 + 6 + 7 + 8)
    assert got["all_slots_bytes"] == 4 * (w + 3 * kv * 9)
    assert jnp.dtype(cfg.jnp_dtype) == jnp.bfloat16
    assert roofline.datasheet_gbs("NVIDIA H200") == 4800.0
    assert roofline.datasheet_gbs("cpu") is None


def test_sampler_bench_reports_the_roofline(capsys):
    from persona_jax.bench import sampler

    args = ["--model", "tiny", "--batch", "2", "--prompt_len", "8", "--new_tokens", "4"]
    args += ["--repeats", "1", "--baseline", "none", "--dtype", "bfloat16", "--roofline"]
    assert sampler.main(args) == 0
    out = _last_json(capsys)
    assert out["dtype"] == "bfloat16" and out["random_weights"] is True
    assert 0 < out["decode_min_gb"] <= out["decode_all_slots_gb"]
    assert out["copy_gbs"] > 0 and out["roofline_fraction_measured"] > 0
    assert out["ratio"] is None
