"""Errors raised while reading or writing model weights."""


class WeightsError(ValueError):
    """A weights file (or directory) that persona_jax cannot read or write.

    Subclasses `ValueError` so callers that already catch bad-input errors keep working; the
    message always names the offending file, so a user pointed at the wrong directory sees
    which file was read and what was wrong with it.
    """
