"""Token-level penalties that keep a consistency reward from being gamed.

All functions take padded token arrays with validity masks and run under `jax.jit`:
- `ngram_overlap`: fraction of the reply's n-grams that occur verbatim in the persona text.
  Copying the persona is the easiest way to look "consistent" to a judge; this is reported
  every step and can be penalised.
- `contains_sequence`: whether the reply contains any marker sequence, e.g. the partner's
  role name followed by a colon or a chat-template header (the policy speaking as the
  partner, or opening a new turn on its own).
- `length_penalties`: empty replies and run-on replies (hit the token limit without a stop).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _ngrams(tokens: jax.Array, mask: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """All length-n windows [B, L-n+1, n] and whether each lies wholly on valid tokens."""
    length = tokens.shape[1] - n + 1
    if length <= 0:
        b = tokens.shape[0]
        return jnp.zeros((b, 0, n), tokens.dtype), jnp.zeros((b, 0), bool)
    idx = jnp.arange(length)[:, None] + jnp.arange(n)[None, :]
    grams = tokens[:, idx]
    ok = jnp.all(mask[:, idx], axis=-1)
    return grams, ok


def ngram_overlap(
    reply: jax.Array,
    reply_mask: jax.Array,
    persona: jax.Array,
    persona_mask: jax.Array,
    n: int = 4,
) -> jax.Array:
    """[B] fraction of valid reply n-grams found among the persona's n-grams (0 if none).

    Masks may have gaps (padding inside the array); an n-gram counts only when all its tokens
    are valid and contiguous in the array.
    """
    rg, rok = _ngrams(reply, reply_mask.astype(bool), n)
    pg, pok = _ngrams(persona, persona_mask.astype(bool), n)
    if rg.shape[1] == 0 or pg.shape[1] == 0:
        return jnp.zeros((reply.shape[0],), jnp.float32)
    eq = jnp.all(rg[:, :, None, :] == pg[:, None, :, :], axis=-1) & pok[:, None, :]
    hit = jnp.any(eq, axis=-1) & rok
    return jnp.sum(hit, axis=1) / jnp.maximum(jnp.sum(rok, axis=1), 1)


def contains_sequence(
    reply: jax.Array, reply_mask: jax.Array, markers: tuple[tuple[int, ...], ...]
) -> jax.Array:
    """[B] bool: the reply contains any of the (static) marker token sequences."""
    found = jnp.zeros((reply.shape[0],), bool)
    for marker in markers:
        grams, ok = _ngrams(reply, reply_mask.astype(bool), len(marker))
        if grams.shape[1] == 0:
            continue
        hit = jnp.all(grams == jnp.asarray(marker, reply.dtype), axis=-1) & ok
        found |= jnp.any(hit, axis=1)
    return found


def length_penalties(
    lengths: jax.Array, stopped: jax.Array, *, min_tokens: int = 1
) -> tuple[jax.Array, jax.Array]:
    """([B] empty, [B] run-on) indicators as float32.

    `lengths` counts content tokens (without the stop token); `stopped` says whether the reply
    ended with a stop id rather than the token limit.
    """
    empty = (lengths < min_tokens).astype(jnp.float32)
    run_on = (~stopped.astype(bool)).astype(jnp.float32)
    return empty, run_on
