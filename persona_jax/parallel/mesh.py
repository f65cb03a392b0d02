"""One mesh, three axes, every platform.

`data` splits the batch, `fsdp` splits the batch *and* shards parameters and optimizer state
(ZeRO-3 style), `tensor` splits heads and MLP columns. A single CPU is the (1, 1, 1) mesh, so
the same jitted code runs on a laptop, 8 simulated CPU devices, a GPU box and a TPU pod.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import Mesh

MESH_AXES = ("data", "fsdp", "tensor")


def make_mesh(shape: Mapping[str, int] | None = None, devices=None) -> Mesh:
    """A Mesh over `devices` (default: all) with axes `data`, `fsdp`, `tensor`.

    `shape` maps axis names to sizes; one axis may be -1 to take the remaining devices.
    The default puts every device on `fsdp`.
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = dict.fromkeys(MESH_AXES, 1)
    if shape is None:
        sizes["fsdp"] = -1
    else:
        unknown = set(shape) - set(MESH_AXES)
        if unknown:
            raise ValueError(f"unknown mesh axes {sorted(unknown)}; the axes are {MESH_AXES}")
        sizes.update({k: int(v) for k, v in shape.items()})
    free = [k for k, v in sizes.items() if v == -1]
    if len(free) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {free}")
    known = int(np.prod([v for v in sizes.values() if v != -1]))
    if free:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices do not divide into mesh {sizes}")
        sizes[free[0]] = len(devices) // known
    total = int(np.prod(list(sizes.values())))
    if total != len(devices):
        raise ValueError(
            f"mesh {sizes} needs {total} devices but {len(devices)} are available "
            "(set one axis to -1 to absorb the rest)"
        )
    grid = np.asarray(devices, dtype=object).reshape([sizes[a] for a in MESH_AXES])
    return Mesh(grid, MESH_AXES)
