"""Pure, jittable prefill and decode over the slot-based KV cache.

These are the building blocks that the sampler and the multi-turn episode code compose:
`prefill` appends a (left-padded) chunk of tokens to the cache and returns the logits at
each row's last real token; `decode` then generates up to `sampling.max_new_tokens` tokens
in one `lax.while_loop`, so the whole generation is a single device program (no per-token
dispatch from Python) that exits as soon as every row has stopped.

Cache bookkeeping (see `persona_jax.models.llama.model`): every model call writes one slot
per row for the whole batch. Step 0 samples from the prefill logits; each later step first
feeds the previous step's tokens (a slot marked invalid for rows that had already finished),
then samples. With `commit_last=True` (the default) a final feed writes the last generated
token of each row too, so afterwards the cache holds prompt + every generated token,
including the stop token, and the episode code can append the partner's turn directly.
Slots consumed: `decode_slots(max_new_tokens, commit_last)` at most; the caller sizes the
cache (`dynamic_update_slice` would silently clamp an out-of-range write).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import (
    KVCache,
    Params,
    hidden_states,
    init_cache,
    logits_from_hidden,
)
from persona_jax.sampling.filters import sample_tokens, token_logprobs
from persona_jax.sampling.params import SamplingParams


@flax.struct.dataclass
class SampleOutput:
    """What `decode` generated. N = sampling.max_new_tokens.

    tokens: [B, N] int32; `pad_id` after a row's last generated token.
    logprobs: [B, N] float32; log-softmax of the model's raw logits (temperature 1, no
      top-k/top-p) at the chosen token, i.e. the policy's log-prob for RL; 0 after the end.
    mask: [B, N] bool; True where a token was generated.
    lengths: [B] int32; generated tokens per row, including the stop token.
    stopped: [B] bool; the row ended on a stop id (False: it ran into its own limit).
    """

    tokens: jax.Array
    logprobs: jax.Array
    mask: jax.Array
    lengths: jax.Array
    stopped: jax.Array


def decode_slots(max_new_tokens: int, commit_last: bool = True) -> int:
    """Cache slots `decode` writes at most: one per fed token."""
    return max_new_tokens if commit_last else max_new_tokens - 1


def prefill(
    config: LlamaConfig,
    params: Params,
    cache: KVCache,
    tokens: jax.Array,
    token_mask: jax.Array | None = None,
    *,
    fresh: bool = False,
) -> tuple[KVCache, jax.Array]:
    """Append `tokens` [B, T] to the cache; return it and the logits [B, V] at each row's last
    real token (only those: the [B, T, V] logits are never formed).

    Rows may be padded anywhere (`token_mask` False); with left padding the last real token
    is the last column. A row with no real token gets the logits of its last column, which
    is meaningless but harmless (give such rows a decode limit of 0).

    `fresh=True` starts a new conversation: whatever `cache` holds is discarded and the
    tokens attend only among themselves (a T-slot scratch cache, copied into slots 0..T-1),
    instead of attending over all `cache.max_len` slots; the later decode slots are empty
    anyway, so this only removes masked-out work (a third of prefill attention for a
    128-token prompt followed by 64 new tokens).
    """
    b, t = tokens.shape
    if token_mask is None:
        token_mask = jnp.ones((b, t), bool)
    token_mask = token_mask.astype(bool)
    if fresh:
        scratch = init_cache(config, b, t, cache.k.dtype)
        hidden, scratch = hidden_states(
            config, params, tokens, token_mask=token_mask, cache=scratch
        )
        cache = _place_prefix(cache, scratch)
    else:
        hidden, cache = hidden_states(config, params, tokens, token_mask=token_mask, cache=cache)
    last = (t - 1 - jnp.argmax(token_mask[:, ::-1], axis=1)).astype(jnp.int32)
    h_last = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
    return cache, logits_from_hidden(config, params, h_last)


def _place_prefix(cache: KVCache, prefix: KVCache) -> KVCache:
    """`cache` emptied, then holding `prefix` in its first slots (in place when donated)."""
    zero = jnp.zeros((), jnp.int32)
    at5 = (zero,) * 5
    return KVCache(
        k=jax.lax.dynamic_update_slice(cache.k, prefix.k.astype(cache.k.dtype), at5),
        v=jax.lax.dynamic_update_slice(cache.v, prefix.v.astype(cache.v.dtype), at5),
        positions=jax.lax.dynamic_update_slice(cache.positions, prefix.positions, (0, 0)),
        valid=jax.lax.dynamic_update_slice(jnp.zeros_like(cache.valid), prefix.valid, (0, 0)),
        next_pos=prefix.next_pos,
        index=prefix.index,
    )


def _feed(config, params, cache, tokens, valid):
    """Write one slot per row (tokens [B], valid [B]) and return (cache, hidden [B, D])."""
    hidden, cache = hidden_states(
        config, params, tokens[:, None], token_mask=valid[:, None], cache=cache
    )
    return cache, hidden[:, 0]


def decode(
    config: LlamaConfig,
    params: Params,
    cache: KVCache,
    last_logits: jax.Array,
    rng: jax.Array,
    sampling: SamplingParams,
    max_new_tokens: jax.Array | None = None,
    *,
    pad_id: int = 0,
    commit_last: bool = True,
) -> tuple[KVCache, SampleOutput]:
    """Generate up to `sampling.max_new_tokens` tokens per row in one `lax.while_loop`.

    Args:
      last_logits: [B, V] logits for each row's next token (from `prefill`).
      rng: a JAX PRNG key (unused when greedy).
      sampling: static settings (see `SamplingParams`).
      max_new_tokens: [B] int per-row limits, each <= sampling.max_new_tokens (default: that
        value for every row); a row with limit 0 generates nothing.
      pad_id: token written after a row's end.
      commit_last: also write each row's last generated token to the cache (see module docs).

    Returns the cache and a `SampleOutput`. The loop stops when every row has emitted a stop
    id or reached its limit.
    """
    b = last_logits.shape[0]
    n = sampling.max_new_tokens
    if max_new_tokens is None:
        limit = jnp.full((b,), n, jnp.int32)
    else:
        limit = jnp.minimum(jnp.asarray(max_new_tokens, jnp.int32), n)
    stop_ids = jnp.asarray(sampling.stop_ids, jnp.int32)

    def sample_step(i, logits, active, st):
        tokens, logprobs, lengths, stopped = st
        tok = sample_tokens(logits, jax.random.fold_in(rng, i), sampling)
        lp = token_logprobs(logits, tok)
        tok = jnp.where(active, tok, pad_id)
        lp = jnp.where(active, lp, 0.0)
        tokens = jax.lax.dynamic_update_slice(tokens, tok[:, None], (0, i))
        logprobs = jax.lax.dynamic_update_slice(logprobs, lp[:, None], (0, i))
        lengths = lengths + active.astype(jnp.int32)
        if sampling.stop_ids:
            hit = active & jnp.any(tok[:, None] == stop_ids[None, :], axis=-1)
        else:
            hit = jnp.zeros_like(active)
        still = active & ~hit & (lengths < limit)
        return tok, still, (tokens, logprobs, lengths, stopped | hit)

    state = (
        jnp.full((b, n), pad_id, jnp.int32),
        jnp.zeros((b, n), jnp.float32),
        jnp.zeros((b,), jnp.int32),
        jnp.zeros((b,), bool),
    )
    produced = limit > 0  # rows that emit a token at step 0
    tok, active, state = sample_step(0, last_logits, produced, state)

    def cond(carry):
        i, _, _, _, active, _ = carry
        return (i < n) & jnp.any(active)

    def body(carry):
        i, cache, tok, produced, active, state = carry
        cache, hidden = _feed(config, params, cache, tok, produced)
        logits = logits_from_hidden(config, params, hidden)
        new_tok, still, state = sample_step(i, logits, active, state)
        return i + 1, cache, new_tok, active, still, state

    carry = (jnp.ones((), jnp.int32), cache, tok, produced, active, state)
    _, cache, tok, produced, _, state = jax.lax.while_loop(cond, body, carry)
    if commit_last:
        cache, _ = _feed(config, params, cache, tok, produced)
    tokens, logprobs, lengths, stopped = state
    mask = jnp.arange(n)[None, :] < lengths[:, None]
    return cache, SampleOutput(tokens, logprobs, mask, lengths, stopped)


# Jitted entry points for callers that keep the cache between calls (the multi-turn episode
# code): the cache is donated, so the in-place slot writes reuse its buffers.
prefill_jit = jax.jit(prefill, static_argnames=("config", "fresh"), donate_argnames=("cache",))
decode_jit = jax.jit(
    decode,
    static_argnames=("config", "sampling", "pad_id", "commit_last"),
    donate_argnames=("cache",),
)
