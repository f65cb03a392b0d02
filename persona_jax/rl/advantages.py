"""Advantage estimators as pure functions over [batch, time] token arrays.

Multi-turn episodes interleave policy tokens (the simulated user) with partner tokens (the
therapist, teacher, chat partner). The partner is part of the environment, so every
estimator here takes a `mask` of policy tokens and treats the masked-out tokens as if they were
not there: GAE bootstraps from the *next policy token*, even when it sits a whole partner turn
later. That is what "GAE across turns" means in this project.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _masked_reverse_scan(step, init, *xs: jax.Array):
    """Scan right-to-left over time (axis 1) of [batch, time] arrays, carrying `init`."""
    xs_t = tuple(jnp.swapaxes(x, 0, 1) for x in xs)
    _, out = jax.lax.scan(step, init, xs_t, reverse=True)
    return jnp.swapaxes(out, 0, 1)


def gae(
    rewards: jax.Array,
    values: jax.Array,
    mask: jax.Array,
    *,
    gamma: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation over policy tokens only.

    Args:
      rewards, values: [batch, time] float arrays; only entries where `mask` is true are used.
      mask: [batch, time], true on tokens the policy generated.
    Returns:
      (advantages, returns) [batch, time], zero off the mask. The episode ends after the last
      policy token (value 0 beyond it).
    """
    mask = mask.astype(bool)
    batch = rewards.shape[0]
    zero = jnp.zeros((batch,), jnp.float32)

    def step(carry, x):
        next_value, next_adv = carry
        r, v, m = x
        delta = r + gamma * next_value - v
        adv = delta + gamma * lam * next_adv
        carry = (jnp.where(m, v, next_value), jnp.where(m, adv, next_adv))
        return carry, jnp.where(m, adv, 0.0)

    adv = _masked_reverse_scan(
        step, (zero, zero), rewards.astype(jnp.float32), values.astype(jnp.float32), mask
    )
    returns = jnp.where(mask, adv + values, 0.0)
    return adv, returns


def returns_to_go(rewards: jax.Array, mask: jax.Array, *, gamma: float) -> jax.Array:
    """Discounted sum of future policy-token rewards at every policy token (REINFORCE)."""
    mask = mask.astype(bool)

    def step(carry, x):
        r, m = x
        ret = r + gamma * carry
        return jnp.where(m, ret, carry), jnp.where(m, ret, 0.0)

    init = jnp.zeros((rewards.shape[0],), jnp.float32)
    return _masked_reverse_scan(step, init, rewards.astype(jnp.float32), mask)


def masked_mean(x: jax.Array, mask: jax.Array, axis=None) -> jax.Array:
    mask = mask.astype(x.dtype)
    return jnp.sum(x * mask, axis=axis) / jnp.maximum(jnp.sum(mask, axis=axis), 1.0)


def masked_whiten(x: jax.Array, mask: jax.Array, *, shift_mean: bool = True) -> jax.Array:
    """Normalise to zero mean, unit variance over the masked entries (PPO advantage whitening)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * jax.lax.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return jnp.where(mask.astype(bool), out, 0.0)


def rloo_advantages(returns: jax.Array) -> jax.Array:
    """Leave-one-out baseline. returns [groups, k] -> R_i - mean_{j != i} R_j (k >= 2)."""
    k = returns.shape[-1]
    if k < 2:
        raise ValueError(f"RLOO needs at least 2 rollouts per group, got k={k}")
    total = jnp.sum(returns, axis=-1, keepdims=True)
    return returns - (total - returns) / (k - 1)


def group_normalised_advantages(returns: jax.Array, *, eps: float = 1e-6) -> jax.Array:
    """GRPO-style: (R_i - mean_group) / (std_group + eps) over the last axis [groups, k]."""
    mean = jnp.mean(returns, axis=-1, keepdims=True)
    std = jnp.std(returns, axis=-1, keepdims=True)
    return (returns - mean) / (std + eps)


def update_moving_baseline(baseline: jax.Array, returns: jax.Array, decay: float) -> jax.Array:
    """Exponential moving average of the mean return (the REINFORCE 'moving' baseline)."""
    return decay * baseline + (1.0 - decay) * jnp.mean(returns)
