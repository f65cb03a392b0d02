"""Where the project finds data that lives outside the repository.

The paper's released dialogues are third-party data that the repository must never
contain; they are read from a folder beside the clone. One function decides that folder so
that the builders, the tests and CI all agree on it.
"""

from __future__ import annotations

import os
from pathlib import Path

CONSISTENT_LLMS_ENV = "PERSONA_JAX_CONSISTENT_LLMS_DIR"


def repo_root() -> Path:
    """The checkout this package was imported from (``persona_jax/`` lives directly below)."""
    return Path(__file__).resolve().parents[2]


def consistent_llms_dir() -> Path:
    """The folder holding the paper's released data (``chatting/``, ``education/``, ...).

    ``$PERSONA_JAX_CONSISTENT_LLMS_DIR`` wins when set; otherwise the data is expected at
    ``<repo root>/../shared/consistent_llms``, where CI places it. The folder is not checked
    here: callers decide whether a missing folder is an error or a reason to skip.
    """
    explicit = os.environ.get(CONSISTENT_LLMS_ENV)
    if explicit:
        return Path(explicit).expanduser()
    return repo_root().parent / "shared" / "consistent_llms"


def consistent_llms_dir_is_explicit() -> bool:
    """Whether the location was set by the environment (then a missing folder is an error)."""
    return bool(os.environ.get(CONSISTENT_LLMS_ENV))
