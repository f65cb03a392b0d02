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
