"""Training curves: reading a run's metrics (resumes included) and drawing them."""

import json
import warnings

import numpy as np
import pytest

from persona_jax.train.curves import main, moving_average, plot_run, read_metrics


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _run(tmp_path, steps=6):
    rows = [{"step": 0, "eval/p_inconsistent": 0.2, "eval/swap_p_inconsistent": 0.25}]
    for s in range(1, steps + 1):
        rows.append(
            {
                "step": s,
                "kl": 0.5 * s,
                "kl_coef": 0.2 - 0.01 * s,
                "reward/total": 0.1 * s,
                "reward/prompt_to_line": 0.6,
                "time/rollout_s": 2.0,
                "time/reward_s": 1.0,
                "time/update_s": 3.0,
            }
        )
    rows.append({"step": steps, "eval/p_inconsistent": 0.15, "eval/swap_p_inconsistent": 0.2})
    _write(tmp_path / "metrics.jsonl", rows)
    (tmp_path / "config.json").write_text(json.dumps({"rl": {"kl_budget": 5.0}}))
    return rows


def test_read_metrics_splits_evaluations_and_keeps_the_resumed_rows(tmp_path):
    _run(tmp_path, steps=4)
    with open(tmp_path / "metrics.jsonl", "a") as f:  # a resume from step 2 redoes 3 and 4
        f.write(json.dumps({"step": 3, "kl": 9.0}) + "\n")
        f.write(json.dumps({"step": 4, "kl": 8.0}) + "\n")
    train, evals = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert [r["kl"] for r in train] == [0.5, 1.0, 9.0, 8.0]
    assert [(r["step"], r["p_inconsistent"]) for r in evals] == [(0, 0.2), (4, 0.15)]


def test_read_metrics_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        read_metrics(tmp_path / "metrics.jsonl")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "kl": 0.1}\n{"kl": 0.2}\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2: not a metrics row"):
        read_metrics(tmp_path / "metrics.jsonl")


def test_moving_average_is_the_trailing_mean():
    x = np.random.default_rng(0).normal(size=17)
    expected = [x[max(0, i - 4) : i + 1].mean() for i in range(len(x))]
    np.testing.assert_allclose(moving_average(x, 5), expected, rtol=1e-12)
    np.testing.assert_allclose(moving_average(x, 1), x)
    with pytest.raises(ValueError, match="window"):
        moving_average(x, 0)


def test_plot_run_writes_a_png(tmp_path, capsys):
    _run(tmp_path)
    path = plot_run(tmp_path)
    assert path == tmp_path / "curves.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "elsewhere" / "c.png"
    assert main([str(tmp_path), "--out", str(out)]) == 0
    assert out.is_file()
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["curves"][0]["png"] == str(
        out
    )


def test_plot_run_without_evaluations_or_kl_draws_without_warnings(tmp_path):
    _write(tmp_path / "metrics.jsonl", [{"step": 1, "reward/total": 0.5}])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plot_run(tmp_path).is_file()  # empty panels say so; no config.json is fine
