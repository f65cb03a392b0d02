"""Errors raised while building or loading models."""


class ModelConfigError(ValueError):
    """A model configuration (or its source file) that persona_jax cannot build.

    The message always names the offending file when one is known, so a user who points the
    loader at the wrong directory sees which file was read and what was wrong with it.
    """
