"""Per-utterance rewards of an episode, computed on device.

For each policy utterance the distilled judge reads (persona, the last few lines, the line)
laid out by `JudgeTemplate`, assembled here from the episode's token arrays, and returns
P(contradicts persona) and P(conflicts with earlier lines). The Q&A probability comes from
the rollout itself. Penalties guard against gaming. Everything is a pure function of arrays,
so rollout -> rewards -> update can sit in one jitted step.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from persona_jax.envs import tokens as tk
from persona_jax.envs.episode import EpisodeInputs, EpisodeOutput
from persona_jax.judges.distilled import judge_probs
from persona_jax.judges.template import JudgeTemplate
from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params
from persona_jax.rewards.penalties import contains_sequence, length_penalties, ngram_overlap


@dataclasses.dataclass(frozen=True)
class RewardSpec:
    """Weights of the reward components and the judge's static layout (jit static)."""

    template: JudgeTemplate
    max_history_lines: int = 4
    w_prompt_to_line: float = 1.0
    w_line_to_line: float = 0.5
    w_qa: float = 0.5
    empty_penalty: float = 1.0
    run_on_penalty: float = 0.5
    partner_penalty: float = 1.0
    copy_penalty: float = 0.0
    copy_ngram: int = 4
    # Weight of P(inconsistent | another persona) - P(inconsistent | own persona): the part of
    # the judge's verdict that depends on whose persona it is. A judge's score can rise for
    # lines that suit any persona; this term pays only for lines that suit this one better.
    w_persona_contrast: float = 0.0
    # Token sequences that mean "the policy speaks as the partner / opens a new turn".
    partner_markers: tuple[tuple[int, ...], ...] = ()


def _lines(inputs: EpisodeInputs, out: EpisodeOutput) -> tuple[list, list]:
    """Conversation lines in order: opening (other), then policy/partner replies alternating."""
    pol, par = out.policy, out.partner
    pol_content = tk.content_mask(pol.mask, pol.lengths, pol.stopped)
    par_content = tk.content_mask(par.mask, par.lengths, par.stopped)
    lines = [(inputs.opening, inputs.opening_mask.astype(bool))]
    for t in range(pol.tokens.shape[0]):
        lines.append((pol.tokens[t], pol_content[t]))
        if t < par.tokens.shape[0]:
            lines.append((par.tokens[t], par_content[t]))
    return lines, [False] + [i % 2 == 0 for i in range(len(lines) - 1)]


def _span(shape: tuple[int, ...], at: int, piece: tuple[jax.Array, jax.Array]) -> jax.Array:
    """[B, L] mask of a piece's valid tokens placed at column `at` of the judge input."""
    return jnp.zeros(shape, bool).at[:, at : at + piece[0].shape[1]].set(piece[1])


def contrast_inputs(inputs: EpisodeInputs) -> EpisodeInputs:
    """The episode inputs with each row's persona replaced by its contrast persona (what the
    judge reads; the lines stay the ones the policy said for its own persona)."""
    return inputs.replace(
        persona=inputs.contrast_persona, persona_mask=inputs.contrast_persona_mask
    )


def _p_inconsistent(spec, judge_cfg, judge_pools, backbone, head, inputs, out) -> jax.Array:
    """[T, B, 2] the judge's P(inconsistent) (prompt-to-line, line-to-line) per utterance."""
    ids, mask, line, persona = judge_inputs(spec, inputs, out)
    t, b, width = ids.shape
    flat = lambda x: x.reshape(t * b, width)
    return judge_probs(
        judge_cfg, backbone, head, *map(flat, (ids, mask, line, persona)), pools=judge_pools
    ).reshape(t, b, 2)


def judge_inputs(spec: RewardSpec, inputs: EpisodeInputs, out: EpisodeOutput):
    """Judge ids, mask, line mask and persona mask [T, B, L] for every policy utterance
    (left-aligned)."""
    tmpl = spec.template
    b = inputs.persona.shape[0]
    lines, is_self = _lines(inputs, out)
    per_turn = []
    for t in range(out.policy.tokens.shape[0]):
        idx = 2 * t + 1  # this utterance's position in `lines`
        pieces = [tk.const_piece(tmpl.persona_header, b), (inputs.persona, inputs.persona_mask)]
        pieces.append(tk.const_piece(tmpl.history_header, b))
        for j in range(idx - spec.max_history_lines, idx):
            if j < 0:
                continue
            tag = tmpl.self_tag if is_self[j] else tmpl.other_tag
            pieces += [tk.const_piece(tag, b), lines[j], tk.const_piece(tmpl.newline, b)]
        pieces.append(tk.const_piece(tmpl.line_header, b))
        line_at = sum(p[0].shape[1] for p in pieces)
        pieces += [lines[idx], tk.const_piece(tmpl.end, b)]
        ids, mask = tk.concat(pieces)
        is_line = _span(ids.shape, line_at, lines[idx])
        is_persona = _span(
            ids.shape, len(tmpl.persona_header), (inputs.persona, inputs.persona_mask)
        )
        per_turn.append((ids, mask, is_line, is_persona))
    width = max(p[0].shape[1] for p in per_turn)  # earlier turns have fewer history lines
    pad = lambda x, v: jnp.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=v)
    ids = jnp.stack([pad(p[0], 0) for p in per_turn])
    rest = [jnp.stack([pad(p[i], False) for p in per_turn]) for i in (1, 2, 3)]
    t, bb, width = ids.shape
    flat = lambda x: x.reshape(t * bb, width)
    mask2, ids2, line2, persona2 = tk.compact(flat(rest[0]), flat(ids), *map(flat, rest[1:]))
    return tuple(x.reshape(ids.shape) for x in (ids2, mask2, line2, persona2))


def episode_rewards(
    spec: RewardSpec,
    judge_cfg: LlamaConfig,
    judge_pools: tuple[str, ...],
    judge_backbone: Params,
    judge_head: dict,
    inputs: EpisodeInputs,
    out: EpisodeOutput,
) -> dict[str, jax.Array]:
    """Reward components and the total, each [T, B] (one value per policy utterance).

    `judge_cfg` and `judge_pools` (the judge's `JudgeConfig.pools`) are static under jit.
    """
    judge = (spec, judge_cfg, judge_pools, judge_backbone, judge_head)
    probs = _p_inconsistent(*judge, inputs, out)
    if spec.w_persona_contrast:
        other = _p_inconsistent(*judge, contrast_inputs(inputs), out)
        contrast = jnp.where(inputs.has_contrast[None], other[..., 0] - probs[..., 0], 0.0)
    else:
        contrast = jnp.zeros(probs.shape[:2], jnp.float32)
    pol = out.policy
    content = tk.content_mask(pol.mask, pol.lengths, pol.stopped)
    n_content = jnp.sum(content, axis=-1)
    empty, run_on = length_penalties(n_content, pol.stopped)
    copy = jax.vmap(
        lambda r, m: ngram_overlap(r, m, inputs.persona, inputs.persona_mask, spec.copy_ngram)
    )(pol.tokens, content)
    as_partner = jax.vmap(lambda r, m: contains_sequence(r, m, spec.partner_markers))(
        pol.tokens, content
    ).astype(jnp.float32)
    p2l_ok, l2l_ok = 1.0 - probs[..., 0], 1.0 - probs[..., 1]
    total = (
        spec.w_prompt_to_line * p2l_ok
        + spec.w_line_to_line * l2l_ok
        + spec.w_qa * out.qa_prob
        - spec.empty_penalty * empty
        - spec.run_on_penalty * run_on
        - spec.partner_penalty * as_partner
        - spec.copy_penalty * copy
        + spec.w_persona_contrast * contrast
    )
    return {
        "total": total,
        "prompt_to_line": p2l_ok,
        "line_to_line": l2l_ok,
        "qa": out.qa_prob,
        "empty": empty,
        "run_on": run_on,
        "as_partner": as_partner,
        "persona_copy": copy,
        "persona_contrast": contrast,
    }


def place_on_tokens(out: EpisodeOutput, utterance_rewards: jax.Array) -> jax.Array:
    """[B, L] token rewards: each utterance's reward on its last token, zero elsewhere."""
    t_ids = jnp.maximum(out.turn_id, 0)  # [B, L]
    per_token = jnp.take_along_axis(utterance_rewards.T, t_ids, axis=1)  # [B, L]
    return jnp.where(out.utterance_end, per_token, 0.0)
