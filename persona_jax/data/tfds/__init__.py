"""TFDS builders of the project's data sets, written as array_record (no TensorFlow needed).

A builder registers with TFDS when its module is imported, after which
``tfds.builder("consistent_llms/prompt_to_line", data_dir=...)`` and ``tfds.data_source`` find
it. The modules are imported lazily (``persona_jax.data.tfds.ConsistentLlms`` imports on first
use) so that ``python -m persona_jax.data.tfds.consistent_llms`` defines its builder once.
"""

from __future__ import annotations

import importlib
from typing import Any

_BUILDERS = {
    "ConsistentLlms": "persona_jax.data.tfds.consistent_llms",
    "PersonaBank": "persona_jax.data.tfds.persona_bank",
}

__all__ = sorted(_BUILDERS)


def __getattr__(name: str) -> Any:
    if name in _BUILDERS:
        return getattr(importlib.import_module(_BUILDERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
