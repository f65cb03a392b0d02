"""The policy update: PPO and the REINFORCE family as one jittable function (purejaxrl style).

`update(state, batch)` recomputes behaviour and reference log-probs, turns per-token rewards
into advantages (GAE across turns for PPO; returns-to-go with a moving or learned baseline;
RLOO; group-normalised), then runs epochs x minibatches of clipped policy-gradient steps in a
`lax.scan`. Every per-token array lives on the *shifted* grid [B, L-1]: entry p is about the
token at sequence position p+1, predicted from position p.
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


def forward_terms(
    cfg: LlamaConfig, rl: RLConfig, params: dict[str, Any], seq: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(log-probs, entropies, values), each [B, L-1] on the shifted grid."""
    hidden, _ = hidden_states(cfg, params["policy"], seq, token_mask=mask)
    h = hidden[:, :-1]
    logits = logits_from_hidden(cfg, params["policy"], h)
    logp = losses.token_logprobs(logits, seq[:, 1:])
    ent = losses.entropy_from_logits(logits)
    if rl.uses_critic:
        if rl.critic == "separate":
            hc, _ = hidden_states(cfg, params["critic"], seq, token_mask=mask)
            h = hc[:, :-1]
        head = params["value_head"]
        values = jnp.dot(h.astype(jnp.float32), head["w"]) + head["b"]
    else:
        values = jnp.zeros(logp.shape, jnp.float32)
    return logp, ent, values


def reference_logprobs(cfg: LlamaConfig, ref: Params, seq: jax.Array, mask: jax.Array):
    hidden, _ = hidden_states(cfg, ref, seq, token_mask=mask)
    return losses.token_logprobs(logits_from_hidden(cfg, ref, hidden[:, :-1]), seq[:, 1:])


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
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One RL update from a batch of episodes. Pure; jit with cfg/rl/tx static."""
    seq, mask = batch.sequence, batch.sequence_mask.astype(bool)
    act = (batch.policy_mask.astype(bool) & mask)[:, 1:]
    actf = act.astype(jnp.float32)
    old_logp, _, old_values = jax.lax.stop_gradient(forward_terms(cfg, rl, state.params, seq, mask))
    ref_logp = jax.lax.stop_gradient(reference_logprobs(cfg, ref_params, seq, mask))
    kl_tok = jnp.where(act, old_logp - ref_logp, 0.0)
    rewards = batch.rewards[:, 1:].astype(jnp.float32)
    if rl.kl_in_reward:
        rewards = rewards - state.kl_coef * kl_tok
    adv, returns, baseline = compute_advantages(rl, state, rewards, old_values, act)

    b = seq.shape[0]
    if b % rl.minibatches:
        raise ValueError(f"batch {b} is not divisible into {rl.minibatches} minibatches")
    mb = b // rl.minibatches
    data = (seq, mask, act, old_logp, old_values, ref_logp, adv, returns)

    def loss_fn(params, d):
        s, m, a, olp, ov, rlp, ad, ret = d
        logp, ent, values = forward_terms(cfg, rl, params, s, m)
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
        return (params, opt_state), {**info, "grad_norm": optax.global_norm(grads)}

    rng = jax.random.wrap_key_data(state.rng)
    rng, perm_key = jax.random.split(rng)
    perms = jax.vmap(lambda k: jax.random.permutation(k, b))(jax.random.split(perm_key, rl.epochs))
    idx = perms.reshape(rl.epochs * rl.minibatches, mb)
    (params, opt_state), infos = jax.lax.scan(minibatch_step, (state.params, state.opt_state), idx)

    episode_kl = jnp.sum(kl_tok, axis=1)
    kl_coef = state.kl_coef
    if rl.adaptive_kl:
        kl_coef = losses.adaptive_kl_coef(
            kl_coef, jnp.mean(episode_kl), target=rl.kl_target, horizon=rl.kl_horizon, n_steps=b
        )
    metrics = {k: jnp.mean(v) for k, v in infos.items()}
    metrics.update(
        kl=jnp.mean(episode_kl),
        kl_per_token=adv_lib.masked_mean(kl_tok, actf),
        kl_coef=state.kl_coef,
        advantage_mean=adv_lib.masked_mean(adv, actf),
        return_mean=jnp.mean(jnp.sum(batch.rewards[:, 1:] * actf, axis=1)),
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
