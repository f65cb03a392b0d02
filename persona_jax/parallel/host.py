"""Moving data between host and a (possibly multi-process) mesh.

In a multi-controller run each process reads its own shard of the batch, and global arrays
are not fully addressable from any one process. These two helpers are the only places that
care: `global_batch` assembles per-process host arrays into global arrays, `to_host` brings
global results back (gathered across processes when needed) for logging and evaluation.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from persona_jax.parallel.partition import batch_sharding


def global_batch(local: Any, mesh) -> Any:
    """Per-process host arrays (leading dim = local batch) -> global batch-sharded arrays."""
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            batch_sharding(mesh, np.ndim(x)), np.asarray(x)
        ),
        local,
    )


def to_host(tree: Any) -> Any:
    """NumPy copies of a pytree of arrays, gathering non-addressable shards across processes."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)
