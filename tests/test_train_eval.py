"""The trainer's held-out evaluation: sampled protocol, repeated personas, both judges' views."""

import numpy as np
import pytest

from configs.tiny import get_config
from persona_jax.train import evaluation as ev
from persona_jax.train.setup import Judge, build_run


@pytest.fixture(scope="module")
def run():
    c = get_config()
    c.eval.temperature = 1.0
    c.eval.samples_per_persona = 2
    c.eval.num_personas = 2
    return build_run(c)


def test_samples_per_persona_repeats_each_persona_with_its_opening(run) -> None:
    batch = ev.eval_batch(run, seed=0)
    ids = batch["persona_id"]
    assert len(ids) == 4
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]
    assert batch["opening_line"][0] == batch["opening_line"][1]
    assert batch["partner_prompt"][2] == batch["partner_prompt"][3]
    # The same seed gives the same batch (before and after training see the same personas).
    assert ev.eval_batch(run, seed=0) == batch


def test_first_persona_moves_the_held_out_window() -> None:
    from persona_jax.data.persona_bank import load_personas

    c = get_config()
    c.eval.num_personas = 2
    c.eval.first_persona = 1
    later = build_run(c)
    held_out = [p.id for p in load_personas(c.data.role, "eval")]
    assert [p.id for p in later.eval_personas] == held_out[1:]
    assert list(dict.fromkeys(ev.eval_batch(later, seed=0)["persona_id"])) == held_out[1:3]


def test_bad_samples_per_persona_is_refused(run) -> None:
    run.config.eval.samples_per_persona = 0
    try:
        with pytest.raises(ValueError, match="samples_per_persona"):
            ev.eval_batch(run, seed=0)
    finally:
        run.config.eval.samples_per_persona = 2


def test_sampled_evaluation_partner_samples_as_in_training(run) -> None:
    assert run.eval_spec.policy_sampling.temperature == 1.0
    assert run.eval_spec.partner_sampling.temperature == run.config.episode.partner_temperature
    c = get_config()  # greedy by default: both sides greedy
    greedy = build_run(c)
    assert greedy.eval_spec.policy_sampling.temperature == 0.0
    assert greedy.eval_spec.partner_sampling.temperature == 0.0


def test_verdicts_use_each_judges_threshold() -> None:
    judge = Judge(None, None, None, None, "x", threshold_prompt_to_line=0.7,
                  threshold_line_to_line=0.3)  # fmt: skip
    # comps hold 1 - P(inconsistent): P = 0.6 is consistent under 0.7, P = 0.4 is a conflict
    # under 0.3.
    comps = {"prompt_to_line": np.array([[0.4, 0.2]]), "line_to_line": np.array([[0.6, 0.8]])}
    p2l, l2l = ev._verdicts(judge, comps)
    assert p2l.tolist() == [[True, False]]
    assert l2l.tolist() == [[False, True]]


def test_evaluate_counts_every_sampled_dialogue_and_reports_both_judges(run) -> None:
    # A second judge object (same weights, other thresholds) stands in for the held-out judge.
    run.eval_judge = Judge(**{**run.judge.__dict__, "threshold_prompt_to_line": 0.0})
    result = ev.evaluate(run, run.base_params, seed=0)
    m = result.metrics
    assert m["num_dialogues"] == 4
    assert 0.0 <= m["p_inconsistent"] <= 1.0
    # Threshold 0: every line is inconsistent for the evaluation judge; the reward judge sees
    # the same probabilities (same weights) under its own threshold.
    assert m["prompt_to_line"] == 0.0
    assert m["reward_judge_p_inconsistent"] == pytest.approx(m["p_inconsistent"], abs=1e-6)
    assert 0.0 <= m["reward_judge_prompt_to_line"] <= 1.0
    assert len(result.dialogues) == min(run.config.eval.samples_to_write, 4)
    # The persona-swap control ran for both judges on the same lines.
    for prefix in ("", "reward_judge_"):
        assert 0.0 <= m[f"{prefix}swap_p_inconsistent"] <= 1.0
        assert 0.0 <= m[f"{prefix}swap_prompt_to_line"] <= 1.0
    assert m["swap_prompt_to_line"] == 0.0  # threshold 0 holds for swapped lines too
    # The per-line scores behind the means, one column per dialogue, with its persona.
    lines = result.per_line
    assert set(lines) == {
        "inconsistent", "p_inconsistent", "reward_judge_p_inconsistent", "swap_inconsistent",
        "swap_p_inconsistent", "reward_judge_swap_p_inconsistent",
    }  # fmt: skip
    assert {v.shape for v in lines.values()} == {(run.eval_spec.num_turns, 4)}
    assert result.persona_ids == ev.eval_batch(run, seed=0)["persona_id"]
    for key in ("p_inconsistent", "reward_judge_p_inconsistent", "swap_p_inconsistent"):
        assert lines[key].mean() == pytest.approx(m[key], abs=1e-6)
    assert lines["inconsistent"].mean() == 1.0 - m["prompt_to_line"]


def test_contrast_rows_pair_rows_with_another_persona_of_the_same_role() -> None:
    from persona_jax.envs.inputs import contrast_rows

    ids = ["a", "a", "b", "b", "c", "d"]
    roles = ["patient", "patient", "patient", "patient", "student", "student"]
    assert contrast_rows(ids, roles).tolist() == [2, 2, 0, 0, 5, 4]
    # A role with a single persona has no contrast: the row points at itself.
    assert contrast_rows(["a", "a", "b"], ["patient", "patient", "student"]).tolist() == [0, 1, 2]
    assert contrast_rows(["a", "b", "c"]).tolist() == [1, 2, 0]


def test_contrast_personas_change_only_what_the_judge_reads(run) -> None:
    from persona_jax.rewards.consistency import contrast_inputs

    _, inputs, out = ev.play_eval_batch(run, run.model_cfg, run.base_params, seed=0)
    assert np.asarray(inputs.has_contrast).all()
    swapped = contrast_inputs(inputs)
    # Rows 0, 1 hold one persona and rows 2, 3 the other: each pair reads the other's.
    np.testing.assert_array_equal(swapped.persona, np.asarray(inputs.persona)[[2, 2, 0, 0]])
    np.testing.assert_array_equal(swapped.policy_prompt, inputs.policy_prompt)
    real = ev.score_episode(run, run.judge, inputs, out)
    other = ev.score_episode(run, run.judge, swapped, out)
    # Another persona in front of the same lines moves the judge's probabilities.
    assert np.abs(other["prompt_to_line"] - real["prompt_to_line"]).max() > 1e-4
