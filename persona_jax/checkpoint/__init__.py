"""Orbax checkpoints with exact resume (train state, data iterator state, run config)."""

from persona_jax.checkpoint.manager import Checkpointer, CheckpointError, Restored

__all__ = ["CheckpointError", "Checkpointer", "Restored"]
