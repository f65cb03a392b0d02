"""Live multi-turn episodes on device: the policy (simulated user) against a partner model.

One jitted `rollout` plays a whole conversation for a batch of personas:

    partner opening line -> policy reply -> partner reply -> policy reply -> ... (num_turns)

Each model keeps its own KV cache (each sees its own system prompt) and every turn *appends*
to it: the other side's reply is spliced in as token ids, wrapped in the chat template's
fixed pieces (`ChatFormat`), and only those new tokens are prefilled. Nothing is detokenised;
the two models must therefore share a tokenizer. After each policy turn a multiple-choice
probe about the persona is asked on a fork of the policy cache and the probability of the
keyed option is read off the letter logits (Q&A consistency, no sampling).

The output carries everything the update and the rewards need: the policy's whole context as
one left-aligned sequence with a mask of policy-generated tokens, the log-probs the sampler
saw, per-utterance turn ids and end positions, and each line for the judge.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from persona_jax.envs import tokens as tk
from persona_jax.envs.chat_format import ChatFormat
from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params, init_cache
from persona_jax.sampling.decode import SampleOutput, decode, decode_slots, prefill
from persona_jax.sampling.params import SamplingParams


@dataclasses.dataclass(frozen=True)
class EpisodeSpec:
    """Static settings of a rollout (a jit static argument)."""

    num_turns: int
    policy_sampling: SamplingParams
    partner_sampling: SamplingParams
    chat: ChatFormat
    pad_id: int

    def __post_init__(self) -> None:
        if self.num_turns < 1:
            raise ValueError(f"num_turns must be >= 1, got {self.num_turns}")

    @property
    def head_is_stop(self) -> bool:
        """Does the assistant-end piece start with a stop token that decode already wrote?"""
        stops = set(self.policy_sampling.stop_ids) & set(self.partner_sampling.stop_ids)
        return bool(self.chat.assistant_to_user) and self.chat.assistant_to_user[0] in stops

    def splice_len(self, reply_len: int, *, qa_len: int | None = None) -> int:
        body = reply_len if qa_len is None else qa_len
        return len(self.chat.assistant_to_user) + body + len(self.chat.user_to_assistant)


@flax.struct.dataclass
class EpisodeInputs:
    """Host-prepared, padded token arrays for a batch of B episodes (see `envs.inputs`)."""

    policy_prompt: jax.Array  # [B, Tp] system (persona) + opening line + generation prompt
    policy_prompt_mask: jax.Array
    partner_prompt: jax.Array  # [B, Tq] partner system + opening line as its own first turn
    partner_prompt_mask: jax.Array
    opening: jax.Array  # [B, No] the opening line's tokens (for the judge's history)
    opening_mask: jax.Array
    persona: jax.Array  # [B, P] persona description tokens (judge, copy penalty)
    persona_mask: jax.Array
    qa_tokens: jax.Array  # [B, num_turns, Tqa] the probe asked after each policy turn
    qa_mask: jax.Array
    qa_option_ids: jax.Array  # [B, num_turns, 5] letter token ids, -1 for absent options
    qa_answer: jax.Array  # [B, num_turns] index of the keyed option
    # Another persona of the same role from the same (per-process) batch, for the
    # persona-contrast reward and the evaluation's swap control; a row's own persona, with
    # has_contrast False, when its role has no other persona in the batch.
    contrast_persona: jax.Array  # [B, P]
    contrast_persona_mask: jax.Array
    has_contrast: jax.Array  # [B] bool


@flax.struct.dataclass
class EpisodeOutput:
    policy: SampleOutput  # fields stacked over turns: tokens [T, B, N], lengths [T, B], ...
    partner: SampleOutput  # [T-1, B, N2]
    qa_prob: jax.Array  # [T, B] probability of the keyed option after each policy turn
    qa_correct: jax.Array  # [T, B] the keyed option is the most likely letter
    sequence: jax.Array  # [B, L] the policy's whole context, left-aligned
    sequence_mask: jax.Array  # [B, L]
    policy_mask: jax.Array  # [B, L] tokens the policy generated (actions)
    behaviour_logprobs: jax.Array  # [B, L] sampler log-probs at policy tokens, 0 elsewhere
    turn_id: jax.Array  # [B, L] policy turn of each action token, -1 elsewhere
    utterance_end: jax.Array  # [B, L] true at the last token of each policy utterance
    policy_cache_slots: jax.Array  # [] slots the policy cache used (for cost reporting)


def _stack(outs: SampleOutput, last: SampleOutput) -> SampleOutput:
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]], axis=0), outs, last)


def _splice(spec: EpisodeSpec, own_stopped, other_tokens, other_mask, batch: int):
    """Close my turn, open a user turn holding the other side's words, open my reply."""
    p3, p2 = spec.chat.assistant_to_user, spec.chat.user_to_assistant
    pieces = []
    if spec.head_is_stop:
        head = jnp.full((batch, 1), p3[0], jnp.int32)
        pieces += [(head, ~own_stopped[:, None]), tk.const_piece(p3[1:], batch)]
    else:
        pieces.append(tk.const_piece(p3, batch))
    pieces += [(other_tokens, other_mask), tk.const_piece(p2, batch)]
    return tk.concat(pieces)


def _qa_prob(cfg, params, cache, spec, stopped, qa_tokens, qa_mask, option_ids, answer):
    """P(keyed option) from the letter logits after asking the probe on a fork of the cache."""
    b = qa_tokens.shape[0]
    toks, mask = _splice(spec, stopped, qa_tokens, qa_mask, b)
    _, logits = prefill(cfg, params, cache, toks, mask)
    valid = option_ids >= 0
    letter_logits = jnp.take_along_axis(logits, jnp.maximum(option_ids, 0), axis=1)
    letter_logits = jnp.where(valid, letter_logits, -jnp.inf)
    probs = jax.nn.softmax(letter_logits, axis=-1)
    keyed = jnp.take_along_axis(probs, answer[:, None], axis=1)[:, 0]
    return keyed, jnp.argmax(letter_logits, axis=-1) == answer


def cache_slots(spec: EpisodeSpec, inputs_shapes: dict[str, tuple[int, ...]]) -> tuple[int, int]:
    """Slots each cache needs for a whole episode (policy includes the Q&A fork)."""
    t = spec.num_turns
    n, n2 = spec.policy_sampling.max_new_tokens, spec.partner_sampling.max_new_tokens
    tp, tq = inputs_shapes["policy_prompt"][1], inputs_shapes["partner_prompt"][1]
    tqa = inputs_shapes["qa_tokens"][2]
    policy = (
        tp + t * decode_slots(n) + (t - 1) * spec.splice_len(n2) + spec.splice_len(0, qa_len=tqa)
    )
    partner = tq + (t - 1) * (spec.splice_len(n) + decode_slots(n2))
    return policy, partner


def rollout(
    policy_cfg: LlamaConfig,
    policy_params: Params,
    partner_cfg: LlamaConfig,
    partner_params: Params,
    inputs: EpisodeInputs,
    rng: jax.Array,
    spec: EpisodeSpec,
) -> EpisodeOutput:
    """Play `spec.num_turns` policy turns against the partner (pure; jit it with spec static)."""
    b = inputs.policy_prompt.shape[0]
    shapes = {k: v.shape for k, v in vars(inputs).items()}
    pol_slots, par_slots = cache_slots(spec, shapes)
    pol_cache = init_cache(policy_cfg, b, pol_slots)
    par_cache = init_cache(partner_cfg, b, par_slots)
    pol_cache, pol_logits = prefill(
        policy_cfg, policy_params, pol_cache, inputs.policy_prompt, inputs.policy_prompt_mask
    )
    par_cache, _ = prefill(
        partner_cfg, partner_params, par_cache, inputs.partner_prompt, inputs.partner_prompt_mask
    )

    def policy_turn(cache, logits, key, t):
        cache, out = decode(
            policy_cfg, policy_params, cache, logits, key, spec.policy_sampling, pad_id=spec.pad_id
        )
        qa = _qa_prob(
            policy_cfg,
            policy_params,
            cache,
            spec,
            out.stopped,
            inputs.qa_tokens[:, t],
            inputs.qa_mask[:, t],
            inputs.qa_option_ids[:, t],
            inputs.qa_answer[:, t],
        )
        return cache, out, qa

    def body(carry, t):
        pol_cache, par_cache, pol_logits, par_stopped, key = carry
        key, k_pol, k_par = jax.random.split(key, 3)
        pol_cache, out, qa = policy_turn(pol_cache, pol_logits, k_pol, t)
        content = tk.content_mask(out.mask, out.lengths, out.stopped)
        s_tok, s_mask = _splice(spec, par_stopped, out.tokens, content, b)
        par_cache, par_logits = prefill(partner_cfg, partner_params, par_cache, s_tok, s_mask)
        par_cache, pout = decode(
            partner_cfg,
            partner_params,
            par_cache,
            par_logits,
            k_par,
            spec.partner_sampling,
            pad_id=spec.pad_id,
        )
        p_content = tk.content_mask(pout.mask, pout.lengths, pout.stopped)
        r_tok, r_mask = _splice(spec, out.stopped, pout.tokens, p_content, b)
        pol_cache, pol_logits = prefill(policy_cfg, policy_params, pol_cache, r_tok, r_mask)
        return (pol_cache, par_cache, pol_logits, pout.stopped, key), (out, qa, pout, r_tok, r_mask)

    init = (pol_cache, par_cache, pol_logits, jnp.zeros((b,), bool), rng)
    turns = jnp.arange(spec.num_turns - 1)
    (pol_cache, _, pol_logits, _, key), ys = jax.lax.scan(body, init, turns)
    outs, qas, pouts, r_toks, r_masks = ys
    pol_cache, last, qa_last = policy_turn(pol_cache, pol_logits, key, spec.num_turns - 1)
    policy = _stack(outs, last)
    qa_prob = jnp.concatenate([qas[0], qa_last[0][None]], axis=0)
    qa_correct = jnp.concatenate([qas[1], qa_last[1][None]], axis=0)
    return EpisodeOutput(
        policy=policy,
        partner=pouts,
        qa_prob=qa_prob,
        qa_correct=qa_correct,
        policy_cache_slots=pol_cache.index,
        **_policy_sequence(inputs, policy, r_toks, r_masks),
    )


def _policy_sequence(inputs: EpisodeInputs, policy: SampleOutput, r_toks, r_masks) -> dict:
    """The policy's context (what its cache holds, in order) as one left-aligned sequence."""
    t, b, n = policy.tokens.shape
    turn = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32)[:, None, None], (t, b, n))
    end = policy.mask & (jnp.arange(n)[None, None, :] == (policy.lengths - 1)[..., None])
    # Interleave [reply_0, splice_0, reply_1, splice_1, ..., reply_{T-1}] per row.
    s = r_toks.shape[2]
    zeros_s = lambda dt: jnp.zeros((t - 1, b, s), dt)

    def interleave(reply, splice):
        body = jnp.concatenate([reply[:-1], splice], axis=2)  # [T-1, B, N+S]
        body = body.transpose(1, 0, 2).reshape(b, -1)
        return jnp.concatenate([body, reply[-1]], axis=1)

    prompt_len = inputs.policy_prompt.shape[1]
    zp = lambda dt: jnp.zeros((b, prompt_len), dt)
    seq = jnp.concatenate([inputs.policy_prompt, interleave(policy.tokens, r_toks)], axis=1)
    mask = jnp.concatenate(
        [inputs.policy_prompt_mask.astype(bool), interleave(policy.mask, r_masks)], axis=1
    )
    act = jnp.concatenate([zp(bool), interleave(policy.mask, zeros_s(bool))], axis=1)
    lp = jnp.concatenate([zp(jnp.float32), interleave(policy.logprobs, zeros_s(jnp.float32))], 1)
    tid = jnp.concatenate(
        [zp(jnp.int32) - 1, interleave(jnp.where(policy.mask, turn, -1), zeros_s(jnp.int32) - 1)],
        axis=1,
    )
    ends = jnp.concatenate([zp(bool), interleave(end, zeros_s(bool))], axis=1)
    mask, seq, act, lp, tid, ends = tk.compact(mask, seq, act, lp, tid, ends)
    return {
        "sequence": seq,
        "sequence_mask": mask,
        "policy_mask": act & mask,
        "behaviour_logprobs": jnp.where(act & mask, lp, 0.0),
        "turn_id": jnp.where(mask, tid, -1),
        "utterance_end": ends & mask,
    }


rollout_jit = jax.jit(rollout, static_argnames=("policy_cfg", "partner_cfg", "spec"))
