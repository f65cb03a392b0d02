"""The KL budget: which policies of a run stayed within it, and the rollback to the latest."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from persona_jax.train.kl_budget import KLHistory

ROOT = Path(__file__).resolve().parents[1]


def test_admissible_needs_the_policys_own_kl_and_the_trailing_mean_within():
    h = KLHistory(budget=5.0)
    assert h.ends_within is None and h.latest_admissible() is None
    got = [h.record(s, k) for s, k in enumerate([0.0, 1.0, 9.0, 4.0, 4.0, 4.0])]
    # Step 2 is over on its own; step 4 (own KL 4) on the mean of steps 2-4 (5.67).
    assert got == [True, True, False, True, False, True]
    assert h.trailing_mean(3) == pytest.approx(14.0 / 3) and h.trailing_mean(0) == 0.0
    assert h.latest_admissible() == 5 and h.ends_within
    h.record(6, 5.5)
    assert not h.ends_within and h.latest_admissible() == 5
    s = h.summary(5)
    assert s["rolled_back_to"] == 5 and s["policy_kl"] == 4.0 and s["within_budget"]
    assert s["last_steps_mean"] == pytest.approx(4.0)
    assert s["at_end"] == pytest.approx((4.0 + 4.0 + 5.5) / 3)
    with pytest.raises(ValueError, match="recorded after"):
        h.record(6, 0.0)


def test_history_round_trips_through_checkpoint_metadata_up_to_the_resumed_step():
    h = KLHistory(budget=1.0)
    for s, k in enumerate([0.0, 0.5, 2.0, 0.1]):
        h.record(s, k)
    back = KLHistory(budget=1.0)
    back.restore(json.loads(json.dumps(h.to_json())), upto=3)
    assert back.steps == [0, 1, 2] and back.kls == [0.0, 0.5, 2.0]
    back.restore(None, upto=3)
    assert back.steps == [] and back.summary()["within_budget"] is None


def _expected_target(kls: list[float], budget: float) -> int | None:
    """The latest policy whose own KL and 3-step trailing mean are within the budget."""
    for i in range(len(kls) - 1, -1, -1):
        if kls[i] <= budget and np.mean(kls[max(0, i - 2) : i + 1]) <= budget:
            return i
    return None


def _policy(directory: Path, step: int):
    from persona_jax.checkpoint import Checkpointer

    ckpt = Checkpointer(directory)
    try:
        return ckpt.restore_raw(step).state["params"]["policy"]
    finally:
        ckpt.close()


def test_a_run_over_its_budget_hands_over_its_latest_policy_within_it(tmp_path):
    import jax

    sys.path.insert(0, str(ROOT))
    from configs import tiny
    from persona_jax.train.trainer import train

    c = tiny.get_config()
    c.workdir = str(tmp_path)
    c.train.steps = 6
    c.train.save_every = 1
    c.train.keep_checkpoints = 10
    c.train.rollback_over_kl_budget = True
    c.rl.kl_budget = 0.0  # the reference (policy 0, KL 0) is within it; a trained policy is not
    result = train(c)

    kls = [
        rec["kl"]
        for rec in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
        if "kl" in rec
    ]
    assert len(kls) == 6 and kls[0] == 0.0
    target = _expected_target(kls, 0.0)
    assert target is not None and target < 6, kls  # this run ends over its budget
    assert result["steps"] == 6 and result["policy_step"] == target
    assert result["kl"]["rolled_back_to"] == target and result["kl"]["within_budget"]
    assert result["kl"]["policy_kl"] == pytest.approx(kls[target])
    assert (tmp_path / "evals" / f"after_step{target:06d}.npz").is_file()
    # The handed-over policy, saved for export, is the training checkpoint of that step.
    handed = _policy(tmp_path / "within_budget", target)
    trained = _policy(tmp_path / "checkpoints", target)
    assert jax.tree.all(jax.tree.map(np.array_equal, handed, trained))
    assert not jax.tree.all(
        jax.tree.map(np.array_equal, handed, _policy(tmp_path / "checkpoints", 6))
    )
    from persona_jax.evaluation.sources import load_model_source

    source = load_model_source(tmp_path / "within_budget")  # what export_hf.py reads
    assert source.description.endswith(f"step {target}") and source.base_tiny
    assert jax.tree.all(jax.tree.map(np.array_equal, source.params, handed))

    # Resumed at its end, the run has only its checkpoints: the same policy from step `target`.
    c.eval.before_after = False
    again = train(c)
    assert again["policy_step"] == target and again["kl"] == result["kl"]


def test_without_rollback_the_last_policy_is_handed_over(tmp_path):
    sys.path.insert(0, str(ROOT))
    from configs import tiny
    from persona_jax.train.trainer import train

    c = tiny.get_config()
    c.workdir = str(tmp_path)
    c.eval.before_after = False
    c.train.steps = 2
    c.rl.kl_budget = -1.0  # nothing is within it
    result = train(c)
    assert result["policy_step"] == 2 and result["kl"]["within_budget"] is False
    assert "rolled_back_to" not in result["kl"] and not (tmp_path / "within_budget").exists()
