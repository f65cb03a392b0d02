"""Memory-bandwidth roofline of a decode step: the fewest bytes it must move, and the ceiling.

Autoregressive decoding of a small model is bandwidth-bound: every step reads all weights
once and each row's keys and values up to its position, while the arithmetic per byte is
about `batch` FLOP. So the time floor of decoding `n` tokens is

    sum over steps t of (weight bytes + batch * kv_bytes_per_token * (prompt_len + t)) / BW

and `floor / measured time` is the fraction of the roofline reached. BW is measured in the
same process (a large device-to-device elementwise pass, bytes read plus written), and the
vendor figure is reported beside it where the device is known.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp

from persona_jax.models.llama import LlamaConfig

# Vendor peak HBM bandwidth, GB/s (SXM parts), for context beside the measured ceiling.
DATASHEET_GBS = {"H200": 4800.0, "H100": 3350.0, "A100": 2039.0}


def datasheet_gbs(device_kind: str) -> float | None:
    """The vendor's peak memory bandwidth for a device kind, if known (None on CPU)."""
    return next((v for k, v in DATASHEET_GBS.items() if k in device_kind), None)


def measured_copy_gbs(num_bytes: int | None = None, repeats: int = 10) -> float:
    """GB/s of a jitted `x + 1` over `num_bytes` of float32, counting bytes read + written.

    The median of `repeats` timed calls after one warm-up; the input is not donated, so the
    output is a fresh buffer and both streams really cross device memory. Default size:
    2 GiB on an accelerator (far above any cache), 128 MiB on a CPU.
    """
    if num_bytes is None:
        num_bytes = 1 << 27 if jax.devices()[0].platform == "cpu" else 1 << 31
    x = jnp.ones((num_bytes // 4,), jnp.float32)
    f = jax.jit(lambda a: a + 1.0)
    jax.block_until_ready(f(x))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(x))
        times.append(time.perf_counter() - t0)
    del x
    return 2 * num_bytes / statistics.median(times) / 1e9


def kv_bytes_per_token(config: LlamaConfig) -> int:
    """Bytes of keys plus values one token leaves in the cache, over all layers."""
    itemsize = jnp.dtype(config.jnp_dtype).itemsize
    return 2 * config.num_layers * config.num_kv_heads * config.head_dim * itemsize


def param_bytes(params) -> int:
    """Bytes of all parameter arrays as stored."""
    return sum(int(x.size) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(params))


def decode_bytes(
    config: LlamaConfig, params, batch: int, prompt_len: int, steps: int
) -> dict[str, float]:
    """The fewest bytes `steps` decode forwards must read, and what reading every slot costs.

    `min_bytes` counts each row's keys and values up to its position; `all_slots_bytes`
    counts the whole static cache (prompt_len + steps slots), which is what a decode step
    with static shapes actually streams.
    """
    w = param_bytes(params)
    kv = kv_bytes_per_token(config) * batch
    positions = sum(prompt_len + t for t in range(steps))
    return {
        "weight_bytes": float(w),
        "min_bytes": float(steps * w + kv * positions),
        "all_slots_bytes": float(steps * (w + kv * (prompt_len + steps))),
    }


def decode_report(
    config: LlamaConfig, params, batch: int, prompt_len: int, new_tokens: int, decode_s: float
) -> tuple[dict[str, float | None], str]:
    """Roofline figures of a timed decode phase (JSON fields) and a one-line summary.

    The first new token comes from the prefill's logits, so `new_tokens - 1` decode forwards.
    """
    need = decode_bytes(config, params, batch, prompt_len, new_tokens - 1)
    copy_gbs = measured_copy_gbs()
    sheet_gbs = datasheet_gbs(jax.devices()[0].device_kind)
    achieved = need["min_bytes"] / decode_s / 1e9
    figures = {
        "decode_min_gb": round(need["min_bytes"] / 1e9, 3),
        "decode_all_slots_gb": round(need["all_slots_bytes"] / 1e9, 3),
        "decode_achieved_gbs": round(achieved, 1),
        "copy_gbs": round(copy_gbs, 1),
        "roofline_fraction_measured": round(achieved / copy_gbs, 4),
        "datasheet_gbs": sheet_gbs,
        "roofline_fraction_datasheet": round(achieved / sheet_gbs, 4) if sheet_gbs else None,
    }
    line = (
        f"roofline: decode moves >= {need['min_bytes'] / 1e9:.2f} GB in {decode_s:.4f}s = "
        f"{achieved:.0f} GB/s; measured copy {copy_gbs:.0f} GB/s -> {achieved / copy_gbs:.1%} "
        "of the roofline"
    )
    if sheet_gbs:
        line += f" ({achieved / sheet_gbs:.1%} of the {sheet_gbs:.0f} GB/s datasheet)"
    return figures, line
