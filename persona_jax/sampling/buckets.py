"""Shape buckets: pad prompt lengths and batch sizes to a few sizes so jit compiles rarely.

Every distinct (batch, prompt length) pair is a new XLA program (seconds to compile for a
30-layer model). Rounding up to a bucket trades a little padded compute for reusing one
compiled program across many requests.
"""

from __future__ import annotations

from collections.abc import Sequence


def next_power_of_two(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def default_length_bucket(n: int, *, minimum: int = 16, linear_after: int = 512) -> int:
    """Powers of two from `minimum` up to `linear_after`, then multiples of `linear_after`.

    Powers of two keep short prompts to few programs; beyond `linear_after` a power of two
    could nearly double the prefill cost, so the step becomes linear.
    """
    if n < 1:
        raise ValueError(f"length must be >= 1, got {n}")
    if n <= linear_after:
        return max(minimum, next_power_of_two(n))
    return -(-n // linear_after) * linear_after


def bucket_for(n: int, buckets: Sequence[int] | None, *, what: str = "length") -> int:
    """The smallest bucket >= n (the default rule when `buckets` is None)."""
    if buckets is None:
        return default_length_bucket(n)
    for b in sorted(buckets):
        if b >= n:
            return b
    raise ValueError(f"{what} {n} exceeds the largest configured bucket {max(buckets)}")


def batch_bucket(n: int, buckets: Sequence[int] | None = None) -> int:
    """Batch sizes round up to a power of two unless explicit buckets are given."""
    if n < 1:
        raise ValueError(f"batch size must be >= 1, got {n}")
    if buckets is None:
        return next_power_of_two(n)
    return bucket_for(n, buckets, what="batch size")
