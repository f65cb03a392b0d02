"""Logical axis names -> mesh PartitionSpecs (EasyLM/Tunix-style short rule lists).

Parameters carry logical axis names (`("layers", "embed", "mlp")`) as NNX metadata; a model
family ships a rule list mapping logical names to mesh axes beside its module. A dimension that
does not divide by its mesh axes is replicated instead of failing, so a 3-KV-head model still
runs on a 2-way tensor mesh (only that dimension is replicated).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Rules = Sequence[tuple[str, str | tuple[str, ...] | None]]


def _axis_size(mesh: Mesh, axes: str | tuple[str, ...] | None) -> int:
    if axes is None:
        return 1
    names = (axes,) if isinstance(axes, str) else axes
    return int(np.prod([mesh.shape[a] for a in names]))


def logical_to_spec(
    logical: Sequence[str | None], shape: Sequence[int], rules: Rules, mesh: Mesh
) -> PartitionSpec:
    """PartitionSpec for an array with the given logical axes and shape under `rules`."""
    table = dict(rules)
    used: set[str] = set()
    spec: list[Any] = []
    for name, dim in zip(logical, shape, strict=True):
        axes = table.get(name) if name is not None else None
        names = () if axes is None else ((axes,) if isinstance(axes, str) else tuple(axes))
        names = tuple(a for a in names if a not in used and mesh.shape.get(a, 1) > 1)
        if not names or dim % _axis_size(mesh, names):
            spec.append(None)
            continue
        used.update(names)
        spec.append(names[0] if len(names) == 1 else names)
    return PartitionSpec(*spec)


def logical_axes_tree(module: nnx.Module) -> dict:
    """The `logical_axes` metadata of a module's parameters, as a pure dict like `params()`."""
    state = nnx.state(module, nnx.Param)

    def axes(var: nnx.Variable) -> tuple:
        meta = var.get_metadata()
        if "logical_axes" not in meta:
            raise ValueError(f"parameter {var} has no logical_axes metadata")
        return tuple(meta["logical_axes"])

    return _pure_axes(state, axes)


def _pure_axes(state: nnx.State, fn) -> dict:
    out: dict = {}
    for path, var in nnx.to_flat_state(state):
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = fn(var)
    return out


def tree_shardings(params: Any, axes: Any, rules: Rules, mesh: Mesh) -> Any:
    """NamedShardings for a params pytree, given a same-structured tree of logical axes."""
    return jax.tree.map(
        lambda ax, x: NamedSharding(mesh, logical_to_spec(ax, np.shape(x), rules, mesh)),
        axes,
        params,
        is_leaf=lambda x: isinstance(x, tuple),
    )


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Leading (batch) dimension split over `data` and `fsdp`; the rest replicated."""
    batch_axes = tuple(a for a in ("data", "fsdp") if mesh.shape[a] > 1) or None
    return NamedSharding(mesh, PartitionSpec(batch_axes, *([None] * (ndim - 1))))
