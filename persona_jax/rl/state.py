"""Explicit training state: one pytree that is jitted, sharded, donated and checkpointed."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params
from persona_jax.rl.losses import KL_ESTIMATORS


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """Static algorithm settings (hashable: a jit static argument)."""

    algorithm: str = "ppo"  # ppo | reinforce | rloo | grpo
    learning_rate: float = 1e-5
    critic_learning_rate: float = 1e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gamma: float = 1.0
    lam: float = 0.95
    clip_eps: float = 0.2
    value_clip_eps: float | None = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    kl_coef: float = 0.05
    kl_in_reward: bool = True
    kl_estimator: str = "k3"  # used when the KL is a loss term
    adaptive_kl: bool = False
    kl_target: float = 0.05
    kl_horizon: float = 1000.0
    # Bounds of the adaptive coefficient: a floor keeps a KL that sits below its target for a
    # while from letting the coefficient decay to nothing (the policy then overshoots the
    # budget before the controller can climb back); a ceiling bounds the pull back.
    kl_coef_min: float = 0.0
    kl_coef_max: float = 1e6
    whiten_advantages: bool = True
    recompute_old_logprobs: bool = False
    epochs: int = 1
    minibatches: int = 1
    group_size: int = 1  # rollouts per persona (rloo, grpo)
    baseline: str = "moving"  # moving | learned (reinforce)
    baseline_decay: float = 0.9
    critic: str = "shared"  # shared (value head on the policy backbone) | separate
    # Recompute decoder activations in the backward pass: memory of one layer's activations
    # instead of all layers', for one more forward of compute (on CPU the update is faster
    # with it: storing activations is memory-bound there).
    remat: bool = False

    def __post_init__(self) -> None:
        if self.algorithm not in ("ppo", "reinforce", "rloo", "grpo"):
            raise ValueError(f"unknown algorithm {self.algorithm!r}")
        if self.algorithm in ("rloo", "grpo") and self.group_size < 2:
            raise ValueError(f"{self.algorithm} needs group_size >= 2, got {self.group_size}")
        if self.critic not in ("shared", "separate"):
            raise ValueError(f"critic must be 'shared' or 'separate', got {self.critic!r}")
        if not 0.0 <= self.kl_coef_min <= self.kl_coef_max:
            raise ValueError(
                f"need 0 <= kl_coef_min <= kl_coef_max, got {self.kl_coef_min} and "
                f"{self.kl_coef_max}"
            )
        if self.adaptive_kl and not self.kl_coef_min <= self.kl_coef <= self.kl_coef_max:
            raise ValueError(
                f"kl_coef {self.kl_coef} is outside [kl_coef_min, kl_coef_max] = "
                f"[{self.kl_coef_min}, {self.kl_coef_max}]"
            )
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(
                f"kl_estimator must be one of {KL_ESTIMATORS}, got {self.kl_estimator!r}"
            )
        if self.kl_estimator == "k1" and not self.kl_in_reward:
            raise ValueError(
                "kl_estimator 'k1' as a loss term has zero expected gradient on policy "
                "samples; use 'k2' or 'k3' with kl_in_reward=False"
            )
        if self.baseline not in ("moving", "learned"):
            raise ValueError(f"baseline must be 'moving' or 'learned', got {self.baseline!r}")

    @property
    def uses_critic(self) -> bool:
        return self.algorithm == "ppo" or (
            self.algorithm == "reinforce" and self.baseline == "learned"
        )


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: dict[str, Any]  # {"policy": ..., "value_head": ..., "critic": backbone or {}}
    opt_state: Any
    kl_coef: jax.Array
    baseline: jax.Array
    rng: jax.Array  # raw key data (uint32), checkpoint friendly


def make_optimizer(rl: RLConfig) -> optax.GradientTransformation:
    """AdamW with global-norm clipping; the critic (head and backbone) gets its own rate."""
    labels = lambda params: {
        "policy": jax.tree.map(lambda _: "policy", params["policy"]),
        "value_head": jax.tree.map(lambda _: "critic", params["value_head"]),
        "critic": jax.tree.map(lambda _: "critic", params["critic"]),
    }
    return optax.chain(
        optax.clip_by_global_norm(rl.max_grad_norm),
        optax.multi_transform(
            {
                "policy": optax.adamw(rl.learning_rate, weight_decay=rl.weight_decay),
                "critic": optax.adamw(rl.critic_learning_rate, weight_decay=rl.weight_decay),
            },
            labels,
        ),
    )


def init_train_state(
    rl: RLConfig, model_cfg: LlamaConfig, policy: Params, seed: int
) -> tuple[TrainState, optax.GradientTransformation]:
    """Fresh state: the policy starts from `policy` (copied), the value head at zero."""
    d = model_cfg.hidden_size
    params = {
        "policy": jax.tree.map(jnp.array, policy),
        "value_head": {"w": jnp.zeros((d,), jnp.float32), "b": jnp.zeros((), jnp.float32)},
        "critic": jax.tree.map(jnp.array, policy) if rl.critic == "separate" else {},
    }
    tx = make_optimizer(rl)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        kl_coef=jnp.asarray(rl.kl_coef, jnp.float32),
        baseline=jnp.zeros((), jnp.float32),
        rng=jax.random.key_data(jax.random.key(seed)),
    )
    return state, tx
