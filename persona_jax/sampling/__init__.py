"""Fast jitted sampling: pure prefill/decode building blocks and a host-side `Sampler`."""

from persona_jax.sampling.buckets import batch_bucket, bucket_for, default_length_bucket
from persona_jax.sampling.decode import (
    SampleOutput,
    decode,
    decode_jit,
    decode_slots,
    prefill,
    prefill_jit,
)
from persona_jax.sampling.filters import argmax, sample_tokens, token_logprobs, top_p_keep
from persona_jax.sampling.params import SamplingParams
from persona_jax.sampling.sampler import Generation, Sampler

__all__ = [
    "Generation",
    "SampleOutput",
    "Sampler",
    "SamplingParams",
    "argmax",
    "batch_bucket",
    "bucket_for",
    "decode",
    "decode_jit",
    "decode_slots",
    "default_length_bucket",
    "prefill",
    "prefill_jit",
    "sample_tokens",
    "token_logprobs",
    "top_p_keep",
]
