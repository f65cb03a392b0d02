"""Jitted, sharded entry points of a training step: rollout, rewards, update.

Three jits at clear boundaries (so the logs can split time between them), each with explicit
input/output shardings over one `Mesh(data, fsdp, tensor)`: parameters and optimizer state
by the model family's logical-axis rules, episode batches along `data`x`fsdp`. The train state
is donated to the update, which rewrites it in place.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params
from persona_jax.models.llama.sharding import LOGICAL_RULES, param_logical_axes
from persona_jax.parallel.partition import batch_sharding, tree_shardings
from persona_jax.rl.state import RLConfig, TrainState
from persona_jax.rl.update import Batch, update


def param_shardings(cfg: LlamaConfig, params: Params, mesh: Mesh) -> Any:
    return tree_shardings(params, param_logical_axes(cfg), LOGICAL_RULES, mesh)


def shard_params(cfg: LlamaConfig, params: Params, mesh: Mesh) -> Params:
    return jax.device_put(params, param_shardings(cfg, params, mesh))


def shard_state(
    state: TrainState, tx: optax.GradientTransformation, cfg: LlamaConfig, mesh: Mesh
) -> TrainState:
    """Place a train state on the mesh; the optimizer state follows its parameters."""
    replicated = NamedSharding(mesh, PartitionSpec())
    p = state.params
    params = {
        "policy": shard_params(cfg, p["policy"], mesh),
        "value_head": jax.device_put(p["value_head"], replicated),
        "critic": shard_params(cfg, p["critic"], mesh) if p["critic"] else {},
    }
    # Moment buffers inherit their parameter's sharding; scalars (counts) land on the default
    # device and are replicated over the mesh explicitly.
    on_mesh = set(mesh.devices.flat)
    opt_state = jax.tree.map(
        lambda x: x if x.sharding.device_set == on_mesh else jax.device_put(x, replicated),
        jax.jit(tx.init)(params),
    )
    rest = jax.device_put((state.step, state.kl_coef, state.baseline, state.rng), replicated)
    return TrainState(rest[0], params, opt_state, rest[1], rest[2], rest[3])


def state_shardings(state: TrainState) -> Any:
    return jax.tree.map(lambda x: x.sharding, state)


def batch_shardings(mesh: Mesh, batch: Any) -> Any:
    return jax.tree.map(lambda x: batch_sharding(mesh, x.ndim), batch)


def make_update_fn(
    cfg: LlamaConfig,
    rl: RLConfig,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    state: TrainState,
    ref_params: Params,
    example_batch: Batch,
    max_actions: int | None = None,
):
    """`update` jitted with explicit shardings and the state donated."""
    replicated = NamedSharding(mesh, PartitionSpec())
    s_sh = state_shardings(state)
    return jax.jit(
        functools.partial(update, cfg=cfg, rl=rl, tx=tx, max_actions=max_actions),
        in_shardings=(s_sh, batch_shardings(mesh, example_batch), state_shardings(ref_params)),
        out_shardings=(s_sh, replicated),
        donate_argnums=(0,),
    )
