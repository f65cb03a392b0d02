"""train.py end to end on configs/tiny.py: kill -9 and resume, clear errors on bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ml_collections import ConfigDict

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--config=configs/tiny.py",
    "--config.eval.before_after=False",
    "--config.train.steps=5",
    "--config.train.save_every=2",
]


def _train(workdir: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "train.py", *TINY, f"--config.workdir={workdir}", *extra]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )


def _losses(workdir: Path) -> dict[int, float]:
    out = {}
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "policy_loss" in rec:
            out[rec["step"]] = rec["policy_loss"]  # the last record of a step wins
    return out


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """An uninterrupted 5-step tiny run, shared by the tests below."""
    work = tmp_path_factory.mktemp("ref")
    ref = _train(work)
    log, _ = ref.communicate(timeout=600)
    assert ref.returncode == 0, log[-3000:]
    return work


def test_sigkill_after_checkpoint_then_resume_matches_uninterrupted(tmp_path, reference_run):
    straight = _losses(reference_run)
    assert sorted(straight) == [1, 2, 3, 4, 5]

    work = tmp_path / "killed"
    proc = _train(work)
    ckpt = work / "checkpoints" / "2"
    deadline = time.time() + 600
    while not ckpt.is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ckpt.is_dir(), "no checkpoint was written"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    resumed = _train(work)
    log, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, log[-3000:]
    assert "resumed from" in log
    again = _losses(work)
    for step in (3, 4, 5):
        assert again[step] == pytest.approx(straight[step], abs=1e-6), (step, again, straight)


def _config(**changes) -> ConfigDict:
    sys.path.insert(0, str(ROOT))
    from configs import tiny

    c = tiny.get_config()
    for key, value in changes.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def test_reeval_replays_a_runs_evaluations_and_reports_changes(tmp_path, reference_run, capsys):
    import shutil

    from persona_jax.train import reeval
    from persona_jax.train.changes import load_eval_lines

    work = tmp_path / "run"
    shutil.copytree(reference_run / "checkpoints", work / "checkpoints")
    assert reeval.main([f"--workdir={work}", "--step=4"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["step"] == 4
    before, personas = load_eval_lines(work / "evals" / "before_step000000.npz")
    after, _ = load_eval_lines(work / "evals" / "after_step000004.npz")
    assert set(before) == set(after) and len(personas) == before["p_inconsistent"].shape[1]
    change = summary["change"]["p_inconsistent"]
    assert change["before"] == pytest.approx(summary["before"]["p_inconsistent"], abs=1e-4)
    assert change["after"] == pytest.approx(summary["after"]["p_inconsistent"], abs=1e-4)
    assert "p_inconsistent_minus_swap" in summary["change"]
    # A second call reuses the saved evaluations and gives the same changes.
    assert reeval.main([f"--workdir={work}", "--step=4"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["before"] is None and again["change"] == summary["change"]
    with pytest.raises(SystemExit):
        reeval.main([f"--workdir={tmp_path / 'nothing'}"])


def test_a_run_ends_with_before_after_changes_and_saves_its_evaluations(tmp_path):
    cmd = [sys.executable, "train.py", "--config=configs/tiny.py", "--config.train.steps=2",
           f"--config.workdir={tmp_path}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(p.name for p in (tmp_path / "evals").iterdir()) == [
        "after_step000002.npz", "before_step000000.npz"
    ]  # fmt: skip
    change = result["change"]["p_inconsistent"]
    assert change["before"] == pytest.approx(result["before"]["p_inconsistent"], abs=1e-4)
    assert change["after"] == pytest.approx(result["after"]["p_inconsistent"], abs=1e-4)
    assert "before -> after, with persona-bootstrap intervals:" in proc.stdout


def test_past_deadline_counts_the_next_step_and_the_after_evaluation():
    from persona_jax.train.trainer import past_deadline

    assert not past_deadline(1e6, 50.0, 300.0, 0.0)  # 0 = no deadline
    assert not past_deadline(60.0, 30.0, 29.0, 2.0)  # ends at 119 s of 120
    assert past_deadline(60.0, 30.0, 31.0, 2.0)  # would end at 121 s
    assert past_deadline(100.0, 0.0, 21.0, 2.0)  # the evaluation alone would overrun


def test_evaluates_after_every_nth_step_but_not_the_last():
    from persona_jax.train.trainer import evaluates_after

    assert [d for d in range(1, 11) if evaluates_after(d, 3, 10)] == [3, 6, 9]
    assert not evaluates_after(10, 5, 10)  # the last step gets the after-evaluation instead
    assert not any(evaluates_after(d, 0, 10) for d in range(1, 11))  # 0 = never


def test_deadline_stops_training_and_still_checkpoints(tmp_path, capsys):
    from persona_jax.train.trainer import train

    c = _config(workdir=str(tmp_path))
    c.eval.before_after = False
    c.train.steps = 5
    c.train.deadline_minutes = 1e-4  # passed by the first step: train one step, then stop
    result = train(c)
    assert result["steps"] == 1
    assert "train.deadline_minutes" in capsys.readouterr().out
    assert (tmp_path / "checkpoints" / "1").is_dir()
    assert (tmp_path / "curves.png").is_file()  # drawn at the end of every run


def test_unknown_config_key_is_rejected(tmp_path):
    proc = _train(tmp_path, "--config.rl.learning_rat=1e-3")
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "learning_rat" in log


def test_bad_inputs_give_clear_errors(tmp_path, monkeypatch):
    from persona_jax.train import setup

    with pytest.raises(setup.RunConfigError, match=r"data\.role='doctor'"):
        setup.build_run(_config(**{"data.role": "doctor"}))
    with pytest.raises(FileNotFoundError, match="distilled judge file missing"):
        setup.build_run(_config(**{"judge.random": False, "judge.path": str(tmp_path / "nope")}))
    with pytest.raises(Exception, match=r"config\.json"):
        setup.build_run(_config(**{"model.tiny": False, "model.path": str(tmp_path)}))
    with pytest.raises(setup.RunConfigError, match="rl: unknown algorithm"):
        setup.build_run(_config(**{"rl.algorithm": "dqn"}))
    with pytest.raises(setup.RunConfigError, match=r"eval\.first_persona=99: .* must be in 0\.\."):
        setup.build_run(_config(**{"eval.first_persona": 99}))
    monkeypatch.setattr(setup, "load_personas", lambda role, split: [] if split == "eval" else [1])
    with pytest.raises(setup.RunConfigError, match="eval persona split is empty"):
        setup.build_run(_config())


def test_exported_policy_loads_in_transformers_and_generates_like_ours(tmp_path, reference_run):
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from persona_jax.models.llama.model import forward
    from persona_jax.weights import load_pretrained

    out = tmp_path / "hf"
    proc = subprocess.run(
        [
            sys.executable,
            "export_hf.py",
            f"--checkpoint_dir={reference_run}",
            f"--output_dir={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    model, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    prompt = [1, 9690, 198, 2020, 359, 346, 47, 2, 198, 1, 520, 9531, 198]
    with torch.no_grad():
        theirs = model.generate(
            torch.tensor([prompt]), max_new_tokens=8, do_sample=False, min_new_tokens=8
        )[0, len(prompt) :].tolist()
    cfg, params = load_pretrained(out)
    ids = list(prompt)
    for _ in range(8):  # greedy by full recomputation: independent of our sampler
        logits, _ = forward(cfg, params, np.asarray([ids]))
        ids.append(int(np.argmax(np.asarray(logits[0, -1]))))
    assert ids[len(prompt) :] == theirs
