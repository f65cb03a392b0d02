"""The policy update: PPO and the REINFORCE family as one jittable function (purejaxrl style).

`update(state, batch)` recomputes behaviour and reference log-probs, turns per-token rewards
into advantages (GAE across turns for PPO; returns-to-go with a moving or learned baseline;
RLOO; group-normalised), then runs epochs x minibatches of clipped policy-gradient steps in a
`lax.scan`. Positions: the *shifted* grid [B, L-1] has entry p about the token at sequence
position p+1, predicted from position p; the *action grid* [B, A] lists only the policy's
tokens of each row, in order (A = the most actions a row can have). All losses and advantages
are computed on the action grid, so the vocabulary projection, the costliest part of a small
model's step, runs on the policy's tokens only, never on prompts or partner turns.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params, hidden_states, logits_from_hidden
from persona_jax.rl import advantages as adv_lib
from persona_jax.rl import losses
from persona_jax.rl.state import RLConfig, TrainState


@flax.struct.dataclass
class Batch:
    """A batch of finished episodes, in the policy's context layout (see `EpisodeOutput`)."""

    sequence: jax.Array  # [B, L] int32, left-aligned
    sequence_mask: jax.Array  # [B, L] bool
    policy_mask: jax.Array  # [B, L] bool, tokens the policy generated
    rewards: jax.Array  # [B, L] float32, environment reward on utterance-final tokens
    behaviour_logprobs: jax.Array  # [B, L] float32, the sampler's log-probs at policy tokens


def action_index(act: jax.Array, max_actions: int | None) -> tuple[jax.Array, jax.Array]:
    """Positions [B, A] of the true entries of `act` [B, P], in order, and their mask."""
    a = act.shape[1] if max_actions is None else min(max_actions, act.shape[1])
    order = jnp.argsort(~act, axis=1, stable=True)[:, :a]
    return order, jnp.take_along_axis(act, order, axis=1)


def _take(x: jax.Array, pos: jax.Array) -> jax.Array:
    return jnp.take_along_axis(x, pos.reshape(pos.shape + (1,) * (x.ndim - 2)), axis=1)


def forward_terms(
    cfg: LlamaConfig,
    rl: RLConfig,
    params: dict[str, Any],
    seq: jax.Array,
    mask: jax.Array,
    pos: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(log-probs, entropies, values) at shifted-grid positions `pos` [B, A] (default: all)."""
    hidden, _ = hidden_states(cfg, params["policy"], seq, token_mask=mask, remat=rl.remat)
    h, targets = hidden[:, :-1], seq[:, 1:]
    if pos is not None:
        h, targets = _take(h, pos), _take(targets, pos)
    logits = logits_from_hidden(cfg, params["policy"], h)
    logp = losses.token_logprobs(logits, targets)
    ent = losses.entropy_from_logits(logits)
    if rl.uses_critic:
        if rl.critic == "separate":
            hc, _ = hidden_states(cfg, params["critic"], seq, token_mask=mask, remat=rl.remat)
            h = hc[:, :-1] if pos is None else _take(hc[:, :-1], pos)
        head = params["value_head"]
        values = jnp.dot(h.astype(jnp.float32), head["w"]) + head["b"]
    else:
        values = jnp.zeros(logp.shape, jnp.float32)
    return logp, ent, values


def reference_logprobs(
    cfg: LlamaConfig, ref: Params, seq: jax.Array, mask: jax.Array, pos: jax.Array
) -> jax.Array:
    hidden, _ = hidden_states(cfg, ref, seq, token_mask=mask)
    h, targets = _take(hidden[:, :-1], pos), _take(seq[:, 1:], pos)
    return losses.token_logprobs(logits_from_hidden(cfg, ref, h), targets)


def compute_advantages(rl: RLConfig, state: TrainState, rewards, values, act):
    """(advantages, returns, new moving baseline) on the shifted grid."""
    baseline = state.baseline
    if rl.algorithm == "ppo":
        adv, returns = adv_lib.gae(rewards, values, act, gamma=rl.gamma, lam=rl.lam)
    elif rl.algorithm == "reinforce":
        returns = adv_lib.returns_to_go(rewards, act, gamma=rl.gamma)
        if rl.baseline == "learned":
            adv = jnp.where(act, returns - values, 0.0)
        else:
            episode_return = jnp.sum(rewards * act, axis=1)
            adv = jnp.where(act, returns - baseline, 0.0)
            baseline = adv_lib.update_moving_baseline(baseline, episode_return, rl.baseline_decay)
    else:  # rloo, grpo: one scalar per episode, episodes grouped k per persona
        episode_return = jnp.sum(rewards * act, axis=1).reshape(-1, rl.group_size)
        if rl.algorithm == "rloo":
            per_episode = adv_lib.rloo_advantages(episode_return)
        else:
            per_episode = adv_lib.group_normalised_advantages(episode_return)
        adv = jnp.where(act, per_episode.reshape(-1)[:, None], 0.0)
        returns = jnp.where(act, jnp.sum(rewards * act, axis=1)[:, None], 0.0)
    if rl.whiten_advantages and rl.algorithm != "grpo":
        adv = adv_lib.masked_whiten(adv, act)
    return adv, returns, baseline


def update(
    state: TrainState,
    batch: Batch,
    ref_params: Params,
    *,
    cfg: LlamaConfig,
    rl: RLConfig,
    tx: optax.GradientTransformation,
    max_actions: int | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One RL update from a batch of episodes. Pure; jit with cfg/rl/tx/max_actions static.

    `max_actions` bounds the policy tokens per row (turns x max new tokens); None = no bound.
    Old log-probs are the sampler's (same parameters: the rollout is on-policy) unless a
    critic forward is needed anyway or `rl.recompute_old_logprobs` asks for a fresh forward.
    """
    seq, mask = batch.sequence, batch.sequence_mask.astype(bool)
    pos, act = action_index((batch.policy_mask.astype(bool) & mask)[:, 1:], max_actions)
    actf = act.astype(jnp.float32)
    if rl.uses_critic or rl.recompute_old_logprobs:
        old_logp, _, old_values = jax.lax.stop_gradient(
            forward_terms(cfg, rl, state.params, seq, mask, pos)
        )
    else:
        old_logp = _take(batch.behaviour_logprobs[:, 1:].astype(jnp.float32), pos)
        old_values = jnp.zeros(old_logp.shape, jnp.float32)
    ref_logp = jax.lax.stop_gradient(reference_logprobs(cfg, ref_params, seq, mask, pos))
    kl_tok = jnp.where(act, old_logp - ref_logp, 0.0)
    env_rewards = jnp.where(act, _take(batch.rewards[:, 1:].astype(jnp.float32), pos), 0.0)
    rewards = env_rewards
    if rl.kl_in_reward:
        rewards = rewards - state.kl_coef * kl_tok
    adv, returns, baseline = compute_advantages(rl, state, rewards, old_values, act)

    b = seq.shape[0]
    if b % rl.minibatches:
        raise ValueError(f"batch {b} is not divisible into {rl.minibatches} minibatches")
    mb = b // rl.minibatches
    data = (seq, mask, pos, act, old_logp, old_values, ref_logp, adv, returns)

    def loss_fn(params, d):
        s, m, p, a, olp, ov, rlp, ad, ret = d
        logp, ent, values = forward_terms(cfg, rl, params, s, m, p)
        pg, info = losses.ppo_policy_loss(logp, olp, ad, a, clip_eps=rl.clip_eps)
        loss = pg
        if rl.uses_critic:
            vf, vinfo = losses.value_loss(values, ov, ret, a, clip_eps=rl.value_clip_eps)
            loss = loss + rl.vf_coef * vf
            info = {**info, **vinfo, "value_loss": vf}
        entropy = adv_lib.masked_mean(ent, a)
        loss = loss - rl.ent_coef * entropy
        kl_loss = adv_lib.masked_mean(losses.kl_estimate(logp, rlp, rl.kl_estimator), a)
        if not rl.kl_in_reward:
            loss = loss + state.kl_coef * kl_loss
        return loss, {**info, "policy_loss": pg, "entropy": entropy, "kl_loss_term": kl_loss}

    grad_fn = jax.grad(loss_fn, has_aux=True)

    def minibatch_step(carry, idx):
        params, opt_state = carry
        d = jax.tree.map(lambda x: jnp.take(x, idx, axis=0), data)
        grads, info = grad_fn(params, d)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state), {**info, "grad_norm": optax.tree.norm(grads)}

    rng = jax.random.wrap_key_data(state.rng)
    rng, perm_key = jax.random.split(rng)
    perms = jax.vmap(lambda k: jax.random.permutation(k, b))(jax.random.split(perm_key, rl.epochs))
    idx = perms.reshape(rl.epochs * rl.minibatches, mb)
    (params, opt_state), infos = jax.lax.scan(minibatch_step, (state.params, state.opt_state), idx)

    episode_kl = jnp.sum(kl_tok, axis=1)
    kl_coef = state.kl_coef
    if rl.adaptive_kl:
        kl_coef = losses.adaptive_kl_coef(
            kl_coef,
            jnp.mean(episode_kl),
            target=rl.kl_target,
            horizon=rl.kl_horizon,
            n_steps=b,
            min_coef=rl.kl_coef_min,
            max_coef=rl.kl_coef_max,
        )
    metrics = {k: jnp.mean(v) for k, v in infos.items()}
    metrics.update(
        kl=jnp.mean(episode_kl),
        kl_per_token=adv_lib.masked_mean(kl_tok, actf),
        kl_coef=state.kl_coef,
        advantage_mean=adv_lib.masked_mean(adv, actf),
        return_mean=jnp.mean(jnp.sum(env_rewards, axis=1)),
        value_mean=adv_lib.masked_mean(old_values, actf),
        response_tokens=jnp.sum(actf) / b,
    )
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        kl_coef=kl_coef,
        baseline=baseline,
        rng=jax.random.key_data(rng),
    )
    return new_state, metrics
