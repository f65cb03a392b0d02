"""Advantage estimators and losses against plain NumPy references on random inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from persona_jax.rl import advantages as adv
from persona_jax.rl import losses


def _turn_mask(rng: np.random.Generator, batch: int, time: int) -> np.ndarray:
    """Alternating partner/policy turns of random lengths, like a multi-turn episode."""
    mask = np.zeros((batch, time), bool)
    for b in range(batch):
        t, policy = 0, bool(rng.integers(2))
        while t < time:
            n = int(rng.integers(1, 6))
            mask[b, t : t + n] = policy
            t, policy = t + n, not policy
    return mask


def _np_gae(r, v, m, gamma, lam):
    a = np.zeros_like(r)
    for b in range(r.shape[0]):
        idx = np.flatnonzero(m[b])
        next_v, next_a = 0.0, 0.0
        for t in idx[::-1]:
            delta = r[b, t] + gamma * next_v - v[b, t]
            next_a = delta + gamma * lam * next_a
            a[b, t], next_v = next_a, v[b, t]
    return a, np.where(m, a + v, 0.0)


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 1.0), (0.99, 0.0)])
def test_gae_matches_numpy_across_turns(gamma, lam):
    rng = np.random.default_rng(0)
    r = rng.normal(size=(4, 37)).astype(np.float32)
    v = rng.normal(size=(4, 37)).astype(np.float32)
    m = _turn_mask(rng, 4, 37)
    assert m.any(axis=1).all() and (~m).any(axis=1).all()
    a, ret = adv.gae(r, v, m, gamma=gamma, lam=lam)
    a_ref, ret_ref = _np_gae(r, v, m, gamma, lam)
    np.testing.assert_allclose(np.asarray(a), a_ref, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ret), ret_ref, atol=1e-5)


def test_gae_ignores_partner_token_values():
    """Values and rewards on partner tokens must not leak into policy-token advantages."""
    rng = np.random.default_rng(1)
    r = rng.normal(size=(2, 20)).astype(np.float32)
    v = rng.normal(size=(2, 20)).astype(np.float32)
    m = _turn_mask(rng, 2, 20)
    a1, _ = adv.gae(r, v, m, gamma=0.99, lam=0.9)
    r2, v2 = r.copy(), v.copy()
    r2[~m], v2[~m] = 100.0, -100.0
    a2, _ = adv.gae(r2, v2, m, gamma=0.99, lam=0.9)
    np.testing.assert_allclose(np.asarray(a1), np.asarray(a2), atol=1e-6)


def test_returns_to_go_matches_numpy():
    rng = np.random.default_rng(2)
    r = rng.normal(size=(3, 25)).astype(np.float32)
    m = _turn_mask(rng, 3, 25)
    out = np.asarray(adv.returns_to_go(r, m, gamma=0.95))
    ref = np.zeros_like(r)
    for b in range(3):
        g = 0.0
        for t in np.flatnonzero(m[b])[::-1]:
            g = r[b, t] + 0.95 * g
            ref[b, t] = g
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_masked_whiten():
    rng = np.random.default_rng(3)
    x = rng.normal(3.0, 2.0, size=(4, 30)).astype(np.float32)
    m = _turn_mask(rng, 4, 30)
    w = np.asarray(adv.masked_whiten(x, m))
    sel = x[m]
    np.testing.assert_allclose(w[m], (sel - sel.mean()) / np.sqrt(sel.var() + 1e-8), atol=1e-4)
    assert np.all(w[~m] == 0)


def test_rloo_and_group_normalised():
    rng = np.random.default_rng(4)
    R = rng.normal(size=(5, 4)).astype(np.float32)
    ref = np.stack([[R[g, i] - np.delete(R[g], i).mean() for i in range(4)] for g in range(5)])
    np.testing.assert_allclose(np.asarray(adv.rloo_advantages(R)), ref, atol=1e-5)
    gn = (R - R.mean(-1, keepdims=True)) / (R.std(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(np.asarray(adv.group_normalised_advantages(R)), gn, atol=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        adv.rloo_advantages(R[:, :1])


def test_ppo_losses_match_numpy():
    rng = np.random.default_rng(5)
    shape = (3, 40)
    logp = rng.normal(-2, 0.3, shape).astype(np.float32)
    old = (logp + rng.normal(0, 0.3, shape)).astype(np.float32)
    a = rng.normal(size=shape).astype(np.float32)
    m = _turn_mask(rng, *shape)
    loss, info = losses.ppo_policy_loss(logp, old, a, m, clip_eps=0.2)
    ratio = np.exp(logp - old)
    obj = np.minimum(ratio * a, np.clip(ratio, 0.8, 1.2) * a)
    np.testing.assert_allclose(float(loss), -obj[m].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(info["clipfrac"]), (np.abs(ratio - 1) > 0.2)[m].mean())

    v = rng.normal(size=shape).astype(np.float32)
    v_old = (v + rng.normal(0, 0.5, shape)).astype(np.float32)
    ret = rng.normal(size=shape).astype(np.float32)
    vl, _ = losses.value_loss(v, v_old, ret, m, clip_eps=0.2)
    vc = v_old + np.clip(v - v_old, -0.2, 0.2)
    ref = 0.5 * np.maximum((v - ret) ** 2, (vc - ret) ** 2)[m].mean()
    np.testing.assert_allclose(float(vl), ref, rtol=1e-5)


def test_kl_estimators_and_entropy():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(2, 5, 11)).astype(np.float32)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(
        np.asarray(losses.entropy_from_logits(logits)), -(p * np.log(p)).sum(-1), atol=1e-5
    )
    lp, rp = np.log(p[..., 0]), np.log(p[..., 1])
    k3 = np.asarray(losses.kl_estimate(lp, rp, "k3"))
    np.testing.assert_allclose(k3, np.exp(rp - lp) - (rp - lp) - 1, atol=1e-5)
    assert np.all(k3 >= 0)
    np.testing.assert_allclose(np.asarray(losses.kl_estimate(lp, rp, "k1")), lp - rp, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(losses.kl_estimate(lp, rp, "k2")), 0.5 * (lp - rp) ** 2, atol=1e-6
    )
    with pytest.raises(ValueError, match="unknown KL"):
        losses.kl_estimate(lp, rp, "k9")


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_kl_loss_gradients_on_policy(kind):
    """Which KL each estimator's loss term pushes down, in exact expectation over a categorical
    policy (the sampling weights held fixed, as in the update): k2 gives the gradient of the
    reverse KL(policy || reference), k3 that of the forward KL(reference || policy), k1 none."""
    rng = np.random.default_rng(11)
    theta = jnp.asarray(rng.normal(size=13), jnp.float32)
    ref = jax.nn.log_softmax(jnp.asarray(rng.normal(size=13), jnp.float32))

    def expected_loss(t):
        logp = jax.nn.log_softmax(t)
        weights = jax.lax.stop_gradient(jnp.exp(logp))
        return jnp.sum(weights * losses.kl_estimate(logp, ref, kind))

    def reverse_kl(t):
        logp = jax.nn.log_softmax(t)
        return jnp.sum(jnp.exp(logp) * (logp - ref))

    def forward_kl(t):
        return jnp.sum(jnp.exp(ref) * (ref - jax.nn.log_softmax(t)))

    got = np.asarray(jax.grad(expected_loss)(theta))
    want = {
        "k1": np.zeros(13),
        "k2": np.asarray(jax.grad(reverse_kl)(theta)),
        "k3": np.asarray(jax.grad(forward_kl)(theta)),
    }[kind]
    assert np.abs(want).max() > 1e-2 or kind == "k1"
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_adaptive_kl_coef_moves_toward_target_within_bounds():
    coef = 0.1
    # Under the target the coefficient shrinks, over it grows, by at most 20% x n_steps/horizon.
    assert float(losses.adaptive_kl_coef(coef, 1.0, target=2.0, horizon=10.0, n_steps=5)) == (
        pytest.approx(0.1 * (1 - 0.2 * 0.5))
    )
    assert float(losses.adaptive_kl_coef(coef, 2.2, target=2.0, horizon=10.0, n_steps=5)) == (
        pytest.approx(0.1 * (1 + 0.1 * 0.5))
    )
    # Many steps under the target: the unbounded controller decays towards 0, the floor holds.
    free, floored = coef, coef
    for _ in range(50):
        free = losses.adaptive_kl_coef(free, 0.0, target=2.0, horizon=8.0, n_steps=8)
        floored = losses.adaptive_kl_coef(
            floored, 0.0, target=2.0, horizon=8.0, n_steps=8, min_coef=0.05, max_coef=0.3
        )
    assert float(free) < 1e-5
    assert float(floored) == pytest.approx(0.05)
    high = coef
    for _ in range(50):
        high = losses.adaptive_kl_coef(
            high, 100.0, target=2.0, horizon=8.0, n_steps=8, min_coef=0.05, max_coef=0.3
        )
    assert float(high) == pytest.approx(0.3)
