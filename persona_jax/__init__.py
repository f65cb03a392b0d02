"""persona_jax: JAX-native multi-turn RL for consistent persona simulation."""

__version__ = "0.1.0"
