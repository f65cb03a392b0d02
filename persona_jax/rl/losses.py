"""Policy-gradient losses as pure functions of per-token arrays and a policy-token mask.

Every function returns (scalar loss, dict of scalar diagnostics) so the update step can log
clip fractions, KL and entropy without recomputing anything.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from persona_jax.rl.advantages import masked_mean

KL_ESTIMATORS = ("k1", "k2", "k3")


def token_logprobs(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """log p(tokens) under `logits` [batch, T, V] -> [batch, T] (float32)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]


def entropy_from_logits(logits: jax.Array) -> jax.Array:
    """Per-token entropy [batch, T] of the categorical distribution given by `logits`."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def kl_estimate(logp: jax.Array, ref_logp: jax.Array, kind: str = "k3") -> jax.Array:
    """Per-token estimate of KL(policy || reference) from tokens sampled by the policy.

    With d = logp - ref_logp: k1 = d is unbiased but can be negative (the classic choice
    inside the reward); k3 = exp(-d) + d - 1 is unbiased and non-negative (Schulman's
    estimator); k2 = d**2 / 2 is biased as a value but, used as a loss term on on-policy
    samples, its gradient E[d * grad logp] is exactly the gradient of each position's
    KL(policy || reference) given its prefix, the divergence a run's KL budget sums over the
    episode (the effect of a token on later positions' KL is left to the KL-in-reward form).
    The gradient of k3 as a loss is E[(1 - exp(-d)) grad logp], that of the *forward*
    KL(reference || policy): its pull on a token the policy has made more likely than the
    reference saturates at 1 however far the policy has moved, so it restrains the sharpening
    that raises the reverse KL less than k2 does.
    """
    d = logp - ref_logp
    if kind == "k1":
        return d
    if kind == "k2":
        return 0.5 * d * d
    if kind == "k3":
        return jnp.exp(-d) + d - 1.0
    raise ValueError(f"unknown KL estimator {kind!r}; use one of {KL_ESTIMATORS}")


def ppo_policy_loss(
    logp: jax.Array,
    old_logp: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    *,
    clip_eps: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped surrogate objective (negated, to minimise), averaged over policy tokens."""
    log_ratio = logp - old_logp
    ratio = jnp.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    loss = masked_mean(-jnp.minimum(unclipped, clipped), mask)
    clipfrac = masked_mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32), mask)
    approx_kl = masked_mean(0.5 * log_ratio**2, mask)
    return loss, {"clipfrac": clipfrac, "approx_kl_old": approx_kl}


def value_loss(
    values: jax.Array,
    old_values: jax.Array,
    returns: jax.Array,
    mask: jax.Array,
    *,
    clip_eps: float | None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """0.5 * squared error to the returns; PPO's clipped variant when `clip_eps` is set."""
    err = (values - returns) ** 2
    if clip_eps is None:
        return 0.5 * masked_mean(err, mask), {"vf_clipfrac": jnp.zeros(())}
    clipped_v = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    err_clipped = (clipped_v - returns) ** 2
    loss = 0.5 * masked_mean(jnp.maximum(err, err_clipped), mask)
    frac = masked_mean((err_clipped > err).astype(jnp.float32), mask)
    return loss, {"vf_clipfrac": frac}


def reinforce_loss(
    logp: jax.Array, advantages: jax.Array, mask: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """-A * log p averaged over policy tokens (advantages are treated as constants)."""
    adv = jax.lax.stop_gradient(advantages)
    return masked_mean(-adv * logp, mask), {}


def adaptive_kl_coef(
    coef: jax.Array,
    observed_kl: jax.Array,
    *,
    target: float,
    horizon: float,
    n_steps: float,
    min_coef: float = 0.0,
    max_coef: float = float("inf"),
) -> jax.Array:
    """Proportional KL controller (Ziegler et al. 2019): move the coefficient toward the target,
    kept within [min_coef, max_coef] (the multiplicative update alone can decay to ~0 while the
    KL sits under its target, and then needs many steps to climb back when it overshoots)."""
    error = jnp.clip(observed_kl / target - 1.0, -0.2, 0.2)
    return jnp.clip(coef * (1.0 + error * n_steps / horizon), min_coef, max_coef)
