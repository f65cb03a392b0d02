"""Pure helpers for padded token arrays with validity masks (gaps allowed).

Episodes build sequences by concatenating fixed-shape pieces whose real length varies per
row (a reply of 7 tokens in a 48-token buffer). Rather than shifting tokens around at every
step, pieces are concatenated with their masks and the model skips invalid slots; `compact`
left-aligns the valid tokens once, when a contiguous sequence is needed (the update step, the
judge).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def const_piece(ids: Sequence[int], batch: int) -> tuple[jax.Array, jax.Array]:
    """A fixed token sequence repeated over the batch, all valid."""
    arr = jnp.broadcast_to(jnp.asarray(list(ids), jnp.int32)[None, :], (batch, len(ids)))
    return arr, jnp.ones((batch, len(ids)), bool)


def concat(pieces: Sequence[tuple[jax.Array, jax.Array]]) -> tuple[jax.Array, jax.Array]:
    """Concatenate (tokens, mask) pieces along time."""
    pieces = [p for p in pieces if p[0].shape[1] > 0]
    tokens = jnp.concatenate([p[0].astype(jnp.int32) for p in pieces], axis=1)
    mask = jnp.concatenate([p[1].astype(bool) for p in pieces], axis=1)
    return tokens, mask


def compact_order(mask: jax.Array) -> jax.Array:
    """[B, T] gather indices that move valid entries to the front, keeping their order."""
    return jnp.argsort(~mask.astype(bool), axis=1, stable=True)


def compact(mask: jax.Array, *arrays: jax.Array) -> tuple[jax.Array, ...]:
    """Left-align the valid entries of each [B, T, ...] array; returns (new_mask, *arrays)."""
    order = compact_order(mask)
    take = lambda a: jnp.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), 1)
    return (take(mask.astype(bool)), *(take(a) for a in arrays))


def content_mask(mask: jax.Array, lengths: jax.Array, stopped: jax.Array) -> jax.Array:
    """A reply's mask without its final stop token (the content another model should read)."""
    last = jnp.arange(mask.shape[-1]) == (lengths - 1)[..., None]
    return mask & ~(last & stopped[..., None])
