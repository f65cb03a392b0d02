"""Model families. Each family is a package with its config, module and sharding rules."""

from persona_jax.models.errors import ModelConfigError

__all__ = ["ModelConfigError"]
