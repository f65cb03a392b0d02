"""Device meshes and logical-axis partitioning shared by every model family."""

from persona_jax.parallel.mesh import MESH_AXES, make_mesh
from persona_jax.parallel.partition import (
    batch_sharding,
    logical_axes_tree,
    logical_to_spec,
    tree_shardings,
)

__all__ = [
    "MESH_AXES",
    "batch_sharding",
    "logical_axes_tree",
    "logical_to_spec",
    "make_mesh",
    "tree_shardings",
]
