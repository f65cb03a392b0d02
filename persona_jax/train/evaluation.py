"""Held-out evaluation: dialogues on eval-split personas, scored by the evaluation judge.

The three metrics, per dialogue then averaged:
- prompt_to_line: fraction of the simulated user's lines the judge finds consistent with the
  persona (P(contradiction) below the judge's validation-chosen threshold);
- line_to_line: fraction of lines (from the second on) the judge finds free of conflicts with
  the speaker's earlier lines;
- qa: fraction of persona probes, asked after each turn, whose keyed option is the policy's
  most likely answer.
Also the degeneration guards: mean reply length and distinct-2 over all replies, and a
persona-swap control: the same lines judged against another persona of the same role. A judge
that finds the swapped lines no less consistent than the real ones cannot tell this policy's
lines apart by persona, whatever its agreement on the release data, and its before/after
numbers say little; the gap between the two is reported for each judge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from persona_jax.data.pipelines import episode_records
from persona_jax.envs import tokens as tk
from persona_jax.envs.episode import EpisodeOutput, rollout_jit
from persona_jax.envs.inputs import build_inputs
from persona_jax.parallel.host import to_host
from persona_jax.rewards.consistency import contrast_inputs, episode_rewards
from persona_jax.train.setup import Judge, Run


def _columns(records: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    return {k: [r[k] for r in records] for k in records[0]}


def eval_batch(run: Run, seed: int) -> dict[str, list[Any]]:
    """A fixed batch of eval-split episode records (same personas and openings every time).

    Each persona appears `eval.samples_per_persona` times in a row with the same opening, so a
    sampled evaluation (temperature > 0) averages over several dialogues per persona.
    """
    personas = run.eval_personas[: run.config.eval.num_personas]
    records = episode_records(personas, run.partners)
    rng = np.random.default_rng(seed)
    for r in records:
        spec = run.partners[r["role"]]
        topic = spec.topics[int(rng.integers(len(spec.topics)))] if spec.topics else None
        if topic is not None:
            r["partner_prompt"] = spec.render_system_prompt(
                subject=topic.subject, grade=topic.grade_level
            )
        else:
            r["partner_prompt"] = spec.render_system_prompt()
        r["opening_line"] = spec.render_opening_line(
            int(rng.integers(len(spec.opening_lines))), topic=topic.topic if topic else None
        )
    repeats = int(run.config.eval.get("samples_per_persona", 1))
    if repeats < 1:
        raise ValueError(f"eval.samples_per_persona must be >= 1, got {repeats}")
    return _columns([dict(r) for r in records for _ in range(repeats)])


def distinct_n(replies: Sequence[Sequence[int]], n: int = 2) -> float:
    grams = [tuple(r[i : i + n]) for r in replies for i in range(len(r) - n + 1)]
    return len(set(grams)) / max(len(grams), 1)


@dataclasses.dataclass
class EvalResult:
    """Mean metrics, readable dialogues, and the per-line scores behind the means.

    ``per_line`` maps a score to a [turns, dialogues] array (``inconsistent``: the evaluation
    judge's 0/1 verdict; ``p_inconsistent``: its P(inconsistent); the ``reward_judge_`` and
    ``swap_`` variants as in ``metrics``); ``persona_ids`` names each dialogue's persona, so
    that before/after changes can be resampled by persona (`persona_jax.metrics.change`).
    """

    metrics: dict[str, float]
    dialogues: list[str]
    per_line: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    persona_ids: list[str] = dataclasses.field(default_factory=list)


def score_episode(run: Run, judge: Judge, inputs, out: EpisodeOutput) -> dict[str, np.ndarray]:
    comps = jax.jit(episode_rewards, static_argnums=(0, 1, 2))(
        run.reward_spec,
        judge.backbone_cfg,
        judge.cfg.pools,
        judge.backbone,
        judge.head,
        inputs,
        out,
    )
    return to_host(comps)


def play_eval_batch(run: Run, policy_cfg, policy_params, seed: int):
    """The evaluation batch of `seed` played by a policy against the frozen partner:
    (batch records, episode inputs, episode output)."""
    batch = eval_batch(run, seed)
    personas = {p.id: p for p in run.eval_personas}
    inputs = build_inputs(
        batch,
        personas,
        run.tokenizer,
        run.chat,
        num_turns=run.eval_spec.num_turns,
        widths=run.widths,
        pad_id=run.tokenizer.pad_id,
    )
    out = rollout_jit(
        policy_cfg,
        policy_params,
        run.partner_cfg,
        run.partner_params,
        inputs,
        jax.random.key(seed),
        run.eval_spec,
    )
    return batch, inputs, out


def evaluate(run: Run, policy_params, *, seed: int = 0) -> EvalResult:
    """Dialogues with the current policy on held-out personas (greedy or sampled per config)."""
    batch, inputs, out = play_eval_batch(run, run.model_cfg, policy_params, seed)
    comps = score_episode(run, run.eval_judge, inputs, out)
    # The same lines through the reward judge: how much of its gain the held-out judge sees.
    reward_comps = None
    if run.eval_judge is not run.judge:
        reward_comps = score_episode(run, run.judge, inputs, out)
    out = to_host(out)
    p2l_ok, l2l_ok = _verdicts(run.eval_judge, comps)
    qa_ok = out.qa_correct
    pol = out.policy
    content = np.asarray(tk.content_mask(pol.mask, pol.lengths, pol.stopped))
    replies = [
        [int(x) for x, m in zip(pol.tokens[t, b], content[t, b], strict=True) if m]
        for t in range(pol.tokens.shape[0])
        for b in range(pol.tokens.shape[1])
    ]
    l2l = l2l_ok[1:].mean(axis=0).mean() if l2l_ok.shape[0] > 1 else float("nan")
    per_line = {"inconsistent": 1.0 - p2l_ok.astype(np.float64), "p_inconsistent": _p(comps)}
    metrics = {
        "prompt_to_line": float(p2l_ok.mean(axis=0).mean()),
        # The judge's mean P(contradicts persona): a threshold-free view of the same metric.
        "p_inconsistent": float(per_line["p_inconsistent"].mean()),
        "line_to_line": float(l2l),
        "qa": float(qa_ok.mean(axis=0).mean()),
        "qa_keyed_prob": float(out.qa_prob.mean()),
        "mean_length": float(np.mean([len(r) for r in replies])),
        "distinct_2": distinct_n(replies, 2),
        "persona_copy": float(comps["persona_copy"].mean()),
        "num_dialogues": int(pol.tokens.shape[1]),
    }
    if reward_comps is not None:
        r_p2l, _ = _verdicts(run.judge, reward_comps)
        metrics["reward_judge_prompt_to_line"] = float(r_p2l.mean(axis=0).mean())
        per_line["reward_judge_p_inconsistent"] = _p(reward_comps)
        metrics["reward_judge_p_inconsistent"] = float(_p(reward_comps).mean())
    swap_metrics, swap_lines = _swap_control(run, inputs, out)
    metrics.update(swap_metrics)
    per_line.update(swap_lines)
    return EvalResult(
        metrics,
        _transcripts(run, batch, out, comps),
        per_line,
        [str(p) for p in batch["persona_id"]],
    )


def _swap_control(
    run: Run, inputs, out: EpisodeOutput
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Each judge's view of the same lines under a swapped persona (see module docs): mean
    metrics and per-line P(inconsistent)."""
    if not bool(np.all(np.asarray(inputs.has_contrast))):
        return {}, {}  # some role has a single persona: no control rather than a partial one
    swapped = contrast_inputs(inputs)
    judges = [("", run.eval_judge)]
    if run.eval_judge is not run.judge:
        judges.append(("reward_judge_", run.judge))
    metrics, per_line = {}, {}
    for prefix, judge in judges:
        comps = score_episode(run, judge, swapped, out)
        p2l, _ = _verdicts(judge, comps)
        metrics[f"{prefix}swap_prompt_to_line"] = float(p2l.mean(axis=0).mean())
        per_line[f"{prefix}swap_p_inconsistent"] = _p(comps)
        metrics[f"{prefix}swap_p_inconsistent"] = float(_p(comps).mean())
        if not prefix:
            per_line["swap_inconsistent"] = 1.0 - p2l.astype(np.float64)
    return metrics, per_line


def _p(comps: dict[str, np.ndarray]) -> np.ndarray:
    """[T, B] P(inconsistent) per line (comps hold 1 - P), in float64 for the means."""
    return 1.0 - np.asarray(comps["prompt_to_line"], np.float64)


def _verdicts(judge: Judge, comps: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """[T, B] consistent-or-not per line: comps hold 1 - P(inconsistent), and a line is
    consistent when P(inconsistent) is below the judge's validation-chosen threshold."""
    p2l_ok = comps["prompt_to_line"] > 1.0 - judge.threshold_prompt_to_line
    l2l_ok = comps["line_to_line"] > 1.0 - judge.threshold_line_to_line
    return p2l_ok, l2l_ok


def _transcripts(run: Run, batch, out: EpisodeOutput, comps) -> list[str]:
    """Readable dialogues (with the judge's per-line scores) for the first few episodes."""
    tok = run.tokenizer
    pol, par = out.policy, out.partner
    texts = []
    for b in range(min(run.config.eval.samples_to_write, pol.tokens.shape[1])):
        lines = [
            f"# {batch['persona_id'][b]}\n{batch['persona'][b]}\n",
            f"PARTNER: {batch['opening_line'][b]}",
        ]
        for t in range(pol.tokens.shape[0]):
            said = tok.decode(pol.tokens[t, b][pol.mask[t, b]], skip_special_tokens=True).strip()
            lines.append(
                f"USER: {said}    [p2l ok {comps['prompt_to_line'][t, b]:.2f}, "
                f"l2l ok {comps['line_to_line'][t, b]:.2f}, qa {float(out.qa_prob[t, b]):.2f}]"
            )
            if t < par.tokens.shape[0]:
                reply = tok.decode(par.tokens[t, b][par.mask[t, b]], skip_special_tokens=True)
                lines.append(f"PARTNER: {reply.strip()}")
        texts.append("\n".join(lines))
    return texts
