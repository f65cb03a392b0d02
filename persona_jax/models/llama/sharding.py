"""Partition rules of the Llama family: logical parameter axes -> mesh axes.

`embed` rows go to `fsdp` (parameters and optimizer state spread over the data-parallel
devices), head and MLP columns to `tensor`, the vocabulary to `tensor` for the big
embedding/LM-head matrices. Stacked layers stay whole on each device (the scan walks them).
"""

LOGICAL_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("layers", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("norm", None),
    ("batch", ("data", "fsdp")),
)


def param_logical_axes(config) -> dict:
    """Logical axes of every parameter of a model with this config (no weights allocated)."""
    from flax import nnx

    from persona_jax.models.llama.model import Llama
    from persona_jax.parallel.partition import logical_axes_tree

    abstract = nnx.eval_shape(lambda: Llama(config, rngs=nnx.Rngs(0)))
    return logical_axes_tree(abstract)
