"""Host-side sampler: ragged prompts in, per-row completions out, one jitted call.

`Sampler.generate` left-pads the prompts to a length bucket, pads the batch to a batch
bucket (extra rows get a decode limit of 0), and runs prefill + decode as ONE compiled
program, so a request costs one dispatch and compiles once per (batch bucket, length
bucket, SamplingParams). The KV cache buffer is donated to that program and handed back,
then reused by the next call of the same shape instead of allocating and zeroing a new one
(`prefill(fresh=True)` marks every old slot invalid, so stale keys/values are masked out).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import KVCache, Params, init_cache
from persona_jax.sampling.buckets import batch_bucket, bucket_for
from persona_jax.sampling.decode import SampleOutput, decode, decode_slots, prefill
from persona_jax.sampling.params import SamplingParams
from persona_jax.text.tokenizer import Message, Tokenizer


@dataclasses.dataclass
class Generation:
    """Per-row results of `Sampler.generate`, padding stripped.

    tokens[i]: generated ids of prompt i, including the stop token if it stopped.
    logprobs[i]: float32 array, the model's raw log-prob of each generated token (see
      `SampleOutput`).
    lengths: int array, len(tokens[i]).
    stopped: bool array, True where the row ended on a stop id.
    texts: decoded completions without the stop token (None without a tokenizer).
    prompt_bucket, batch_bucket: the padded shape the call ran at.
    """

    tokens: list[list[int]]
    logprobs: list[np.ndarray]
    lengths: np.ndarray
    stopped: np.ndarray
    texts: list[str] | None
    prompt_bucket: int
    batch_bucket: int


class Sampler:
    """Batched generation for one model.

    Args:
      config, params: the model (`forward` layout); `update_params` swaps in new weights of
        the same shapes without recompiling (RL updates).
      tokenizer: optional; enables `chat`, decoded `texts`, and default stop ids.
      prompt_buckets: allowed padded prompt lengths (default: powers of two from 16, then
        multiples of 512; see `buckets.default_length_bucket`).
      batch_buckets: allowed padded batch sizes (default: powers of two).
      seed: seeds the key used when `generate` gets no `rng`.
    """

    def __init__(
        self,
        config: LlamaConfig,
        params: Params,
        tokenizer: Tokenizer | None = None,
        *,
        prompt_buckets: Sequence[int] | None = None,
        batch_buckets: Sequence[int] | None = None,
        cache_dtype: Any = None,
        seed: int = 0,
    ) -> None:
        self.config = config
        self.params = params
        self.tokenizer = tokenizer
        self.prompt_buckets = None if prompt_buckets is None else tuple(sorted(prompt_buckets))
        self.batch_buckets = None if batch_buckets is None else tuple(sorted(batch_buckets))
        self.cache_dtype = cache_dtype
        self.pad_id = tokenizer.pad_id if tokenizer is not None else (config.pad_token_id or 0)
        self._rng = jax.random.key(seed)
        self._cache: KVCache | None = None
        self._traces = 0
        self._run = jax.jit(
            self._prefill_and_decode,
            static_argnames=("sampling", "pad_id"),
            donate_argnames=("cache",),
        )

    # ---------------------------------------------------------------- compiled program
    def _prefill_and_decode(self, params, cache, tokens, mask, limits, rng, *, sampling, pad_id):
        self._traces += 1  # runs only while tracing: counts compilations
        cache, logits = prefill(self.config, params, cache, tokens, mask, fresh=True)
        cache, out = decode(
            self.config, params, cache, logits, rng, sampling, limits,
            pad_id=pad_id, commit_last=False,
        )  # fmt: skip
        return cache, out

    @property
    def num_compilations(self) -> int:
        """How many times the generation program was traced (one per new shape/settings)."""
        return self._traces

    @property
    def default_stop_ids(self) -> tuple[int, ...]:
        if self.tokenizer is not None:
            return self.tokenizer.stop_ids
        return tuple(self.config.eos_token_ids)

    def update_params(self, params: Params) -> None:
        """Use new weights (same shapes and dtypes: no recompilation)."""
        self.params = params

    def _cache_for(self, batch: int, slots: int) -> KVCache:
        """Reuse the last cache if its shape fits exactly; keep at most one (bounded memory)."""
        cache, self._cache = self._cache, None
        if cache is None or cache.k.shape[1] != batch or cache.max_len != slots:
            cache = None  # drop the old buffer before allocating the new one
            cache = init_cache(self.config, batch, slots, self.cache_dtype)
        return cache

    # ---------------------------------------------------------------- public API
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        sampling: SamplingParams | None = None,
        *,
        max_new_tokens: int | Sequence[int] | None = None,
        rng: jax.Array | int | None = None,
    ) -> Generation:
        """Continue each token-id prompt; returns a `Generation` in prompt order.

        `max_new_tokens` limits rows individually (each <= sampling.max_new_tokens, which is
        the compiled loop length); `sampling` defaults to greedy with the default stop ids.
        """
        if sampling is None:
            sampling = SamplingParams(temperature=0.0, stop_ids=self.default_stop_ids)
        n = len(prompts)
        if n == 0:
            raise ValueError("generate() needs at least one prompt")
        lens = [len(p) for p in prompts]
        if min(lens) == 0:
            raise ValueError(f"prompt {lens.index(0)} is empty; every prompt needs >= 1 token")
        limits = self._limits(max_new_tokens, n, sampling.max_new_tokens)

        t = bucket_for(max(lens), self.prompt_buckets, what="prompt length")
        b = batch_bucket(n, self.batch_buckets)
        tokens = np.full((b, t), self.pad_id, np.int32)
        mask = np.zeros((b, t), bool)
        for i, p in enumerate(prompts):
            tokens[i, t - len(p) :] = p  # left padding: every row's last token is column t-1
            mask[i, t - len(p) :] = True
        if tokens.min() < 0 or tokens.max() >= self.config.vocab_size:
            bad = int(tokens.max() if tokens.max() >= self.config.vocab_size else tokens.min())
            raise ValueError(f"token id {bad} outside the vocabulary [0, {self.config.vocab_size})")
        row_limits = np.zeros((b,), np.int32)
        row_limits[:n] = limits

        if rng is None:
            self._rng, rng = jax.random.split(self._rng)
        elif isinstance(rng, int):
            rng = jax.random.key(rng)
        cache = self._cache_for(b, t + decode_slots(sampling.max_new_tokens, commit_last=False))
        cache, out = self._run(
            self.params, cache, tokens, mask, row_limits, rng,
            sampling=sampling, pad_id=self.pad_id,
        )  # fmt: skip
        self._cache = cache
        return self._unpack(out, n, sampling, t, b)

    def chat(
        self,
        conversations: Sequence[Sequence[Message]],
        sampling: SamplingParams | None = None,
        **kwargs: Any,
    ) -> Generation:
        """`generate` on chat conversations formatted by the tokenizer's chat template."""
        if self.tokenizer is None:
            raise ValueError("chat() needs a Sampler built with a tokenizer")
        prompts = [self.tokenizer.apply_chat_template(c) for c in conversations]
        return self.generate(prompts, sampling, **kwargs)

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _limits(max_new: int | Sequence[int] | None, n: int, cap: int) -> np.ndarray:
        if max_new is None:
            limits = np.full((n,), cap, np.int32)
        elif isinstance(max_new, int | np.integer):
            limits = np.full((n,), int(max_new), np.int32)
        else:
            limits = np.asarray(list(max_new), np.int32)
            if limits.shape != (n,):
                raise ValueError(f"max_new_tokens has {limits.size} entries for {n} prompts")
        if limits.min() < 0 or limits.max() > cap:
            raise ValueError(
                f"max_new_tokens must be in [0, sampling.max_new_tokens={cap}], got "
                f"{limits.min() if limits.min() < 0 else limits.max()}"
            )
        return limits

    def _unpack(self, out: SampleOutput, n: int, sampling, t: int, b: int) -> Generation:
        host = jax.device_get(out)
        lengths = np.asarray(host.lengths[:n])
        stopped = np.asarray(host.stopped[:n])
        tokens = [host.tokens[i, : lengths[i]].tolist() for i in range(n)]
        logprobs = [np.asarray(host.logprobs[i, : lengths[i]]) for i in range(n)]
        texts = None
        if self.tokenizer is not None:
            texts = [
                self.tokenizer.decode(ids[:-1] if stop else ids)
                for ids, stop in zip(tokens, stopped, strict=True)
            ]
        return Generation(tokens, logprobs, lengths, stopped, texts, t, b)
