"""Sampling settings.

`SamplingParams` is frozen and hashable because it is a *static* argument of the jitted
decode loop: the switches in it (greedy or not, top-k on or off, top-p on or off, the stop
ids, the number of decode steps) change the compiled program, so each distinct value
compiles once and is then reused.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token.

    Attributes:
      temperature: softmax temperature; 0 means greedy (argmax), in which case top_k and
        top_p are ignored.
      top_k: keep only the k most likely tokens (0 = off).
      top_p: nucleus sampling: keep the smallest set of most likely tokens whose probability
        mass (after temperature and top-k) reaches top_p; always keeps the top token
        (1.0 = off).
      max_new_tokens: the number of decode steps compiled into the loop; per-row limits
        passed to `decode` may be smaller, never larger.
      stop_ids: generation of a row ends after it emits any of these ids (the stop token is
        part of the output and counted in its length).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 64
    stop_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not (isinstance(self.top_k, int) and self.top_k >= 0):
            raise ValueError(f"top_k must be an int >= 0 (0 = off), got {self.top_k!r}")
        if not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1] (1 = off), got {self.top_p}")
        if not (isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1):
            raise ValueError(f"max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")
        # Normalise so that equal settings hash equal (lists and numpy ints would not).
        object.__setattr__(self, "stop_ids", tuple(int(t) for t in self.stop_ids))
        if any(t < 0 for t in self.stop_ids):
            raise ValueError(f"stop_ids must be non-negative token ids, got {self.stop_ids}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def replace(self, **changes: object) -> SamplingParams:
        return dataclasses.replace(self, **changes)
