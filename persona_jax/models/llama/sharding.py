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
