"""RL update step: every algorithm runs and learns; a (2, 2, 2) mesh matches one device."""

import os
import subprocess
import sys
import textwrap
from functools import partial

import jax
import numpy as np
import pytest
from flax import nnx

from persona_jax.models.llama import Llama, LlamaConfig
from persona_jax.rl.state import RLConfig, init_train_state
from persona_jax.rl.update import Batch, forward_terms, update

CFG = LlamaConfig(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
)


def make_batch(b=4, length=24, seed=0):
    rng = np.random.default_rng(seed)
    lens = rng.integers(length // 2, length + 1, b)
    mask = np.arange(length)[None] < lens[:, None]
    seq = np.where(mask, rng.integers(3, 64, (b, length)), 0).astype(np.int32)
    act = mask & (rng.random((b, length)) < 0.5)
    act[:, 0] = False
    ends = act & (rng.random((b, length)) < 0.3)
    rewards = np.where(ends, rng.normal(size=(b, length)), 0.0).astype(np.float32)
    behaviour = np.where(act, -rng.random((b, length)) * 3, 0.0).astype(np.float32)
    return Batch(seq, mask, act, rewards, behaviour)


@pytest.mark.parametrize(
    "rl",
    [
        RLConfig(algorithm="ppo", epochs=2, minibatches=2, learning_rate=1e-3),
        RLConfig(algorithm="ppo", critic="separate", kl_in_reward=False, adaptive_kl=True),
        RLConfig(algorithm="reinforce", baseline="moving"),
        RLConfig(algorithm="reinforce", baseline="learned"),
        RLConfig(algorithm="rloo", group_size=2),
        RLConfig(algorithm="grpo", group_size=2, ent_coef=0.01),
        RLConfig(algorithm="rloo", group_size=2, kl_in_reward=False, kl_estimator="k2"),
    ],
    ids=[
        "ppo",
        "ppo-separate-klloss",
        "reinforce",
        "reinforce-learned",
        "rloo",
        "grpo",
        "rloo-k2loss",
    ],
)
def test_every_algorithm_updates(rl):
    params = Llama(CFG, rngs=nnx.Rngs(0)).params()
    state, tx = init_train_state(rl, CFG, params, seed=0)
    new, metrics = jax.jit(lambda s, b: update(s, b, params, cfg=CFG, rl=rl, tx=tx))(
        state, make_batch()
    )
    assert int(new.step) == 1
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    delta = jax.tree.map(
        lambda a, b: float(np.abs(a - b).max()), new.params["policy"], state.params["policy"]
    )
    assert max(jax.tree.leaves(delta)) > 0


def test_adaptive_kl_coefficient_respects_its_floor():
    """The update's controller keeps the coefficient at ``kl_coef_min`` when the KL is far
    under its target (unbounded, the same step would shrink it by 20%)."""
    common = dict(algorithm="ppo", kl_in_reward=False, adaptive_kl=True, kl_coef=0.1)
    common.update(kl_target=1e6, kl_horizon=float(make_batch().sequence.shape[0]))
    params = Llama(CFG, rngs=nnx.Rngs(0)).params()
    coefs = {}
    for floor in (0.0, 0.1):
        rl = RLConfig(**common, kl_coef_min=floor)
        state, tx = init_train_state(rl, CFG, params, seed=0)
        step = jax.jit(partial(update, ref_params=params, cfg=CFG, rl=rl, tx=tx))
        new, _ = step(state, make_batch())
        coefs[floor] = float(new.kl_coef)
    assert coefs[0.0] == pytest.approx(0.08, rel=1e-5)
    assert coefs[0.1] == pytest.approx(0.1, rel=1e-5)
    with pytest.raises(ValueError, match="kl_coef_min <= kl_coef_max"):
        RLConfig(kl_coef_min=0.5, kl_coef_max=0.1)
    with pytest.raises(ValueError, match="outside"):
        RLConfig(**{**common, "kl_coef_min": 0.2})


def test_kl_estimator_is_checked():
    with pytest.raises(ValueError, match="kl_estimator must be"):
        RLConfig(kl_estimator="k9")
    with pytest.raises(ValueError, match="zero expected gradient"):
        RLConfig(kl_estimator="k1", kl_in_reward=False)
    assert RLConfig(kl_estimator="k1").kl_in_reward  # inside the reward k1 is the usual choice


def test_policy_gradient_raises_logprob_of_rewarded_tokens():
    """With a positive reward on some tokens only, their log-probability goes up."""
    rl = RLConfig(
        algorithm="reinforce",
        whiten_advantages=False,
        learning_rate=3e-3,
        kl_coef=0.0,
        max_grad_norm=100.0,
    )
    params = Llama(CFG, rngs=nnx.Rngs(1)).params()
    state, tx = init_train_state(rl, CFG, params, seed=0)
    batch = make_batch(seed=2)
    rewards = np.zeros_like(batch.rewards)
    first = np.argmax(batch.policy_mask, axis=1)
    rewards[np.arange(4), first] = 1.0
    batch = batch.replace(rewards=rewards)
    before = forward_terms(CFG, rl, state.params, batch.sequence, batch.sequence_mask)[0]
    step = jax.jit(lambda s: update(s, batch, params, cfg=CFG, rl=rl, tx=tx))
    for _ in range(3):
        state, _ = step(state)
    after = forward_terms(CFG, rl, state.params, batch.sequence, batch.sequence_mask)[0]
    gain = np.asarray(after - before)[np.arange(4), first - 1]
    assert np.all(gain > 0), gain


MESH_SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    from flax import nnx
    from persona_jax.models.llama import Llama, LlamaConfig
    from persona_jax.parallel import make_mesh
    from persona_jax.rl.state import RLConfig, init_train_state
    from persona_jax.rl import step as st
    from tests.test_update import make_batch

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                      num_heads=4, num_kv_heads=2, head_dim=8)
    rl = RLConfig(algorithm="ppo", epochs=2, minibatches=2, learning_rate=1e-3)
    params = Llama(cfg, rngs=nnx.Rngs(0)).params()
    batch = make_batch(b=8, length=24)
    assert len(jax.devices()) == 8
    results = []
    for shape, devices in (({"data": 2, "fsdp": 2, "tensor": 2}, None),
                           ({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])):
        mesh = make_mesh(shape, devices)
        state, tx = init_train_state(rl, cfg, params, seed=0)
        state = st.shard_state(state, tx, cfg, mesh)
        ref = st.shard_params(cfg, params, mesh)
        b = jax.device_put(batch, st.batch_shardings(mesh, batch))
        fn = st.make_update_fn(cfg, rl, tx, mesh, state, ref, b)
        state, metrics = fn(state, b, ref)
        if shape["data"] == 2:
            spec = state.params["policy"]["layers"]["wq"].sharding.spec
            assert "fsdp" in str(spec) and "tensor" in str(spec), spec
        results.append((jax.device_get(state.params), float(metrics["policy_loss"])))
    (p8, l8), (p1, l1) = results
    diff = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()), p8, p1)))
    print("MAXDIFF", diff, "LOSS", l8, l1)
    assert diff < 1e-5 and abs(l8 - l1) < 1e-5
    """
)


def test_mesh_2x2x2_matches_single_device():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", MESH_SCRIPT],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "MAXDIFF" in proc.stdout


def test_remat_update_equals_stored_activations():
    """Recomputing layer activations in the backward pass changes memory, not the update."""
    params = Llama(CFG, rngs=nnx.Rngs(0)).params()
    results = []
    for remat in (False, True):
        rl = RLConfig(algorithm="ppo", epochs=2, minibatches=2, learning_rate=1e-3, remat=remat)
        state, tx = init_train_state(rl, CFG, params, seed=0)
        new, metrics = jax.jit(
            lambda s, b, rl=rl, tx=tx: update(s, b, params, cfg=CFG, rl=rl, tx=tx)
        )(state, make_batch())
        results.append((new.params, metrics))
    (p0, m0), (p1, m1) = results
    diff = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), p0, p1)
    assert max(jax.tree.leaves(diff)) < 1e-5
    assert float(m0["policy_loss"]) == pytest.approx(float(m1["policy_loss"]), abs=1e-6)
    # The remat program really recomputes: its gradient holds a checkpoint (remat) primitive.
    rl = RLConfig(algorithm="rloo", group_size=2, remat=True)  # no critic: policy only
    jaxpr = jax.make_jaxpr(
        jax.grad(
            lambda p: forward_terms(
                CFG, rl, {"policy": p}, make_batch().sequence, make_batch().sequence_mask
            )[0].sum()
        )
    )(params)
    assert "remat" in str(jaxpr) or "checkpoint" in str(jaxpr)
