"""Judges and base models built from the evaluation configs (``configs/eval.py`` blocks).

Config blocks read here:

- ``distilled``: ``path`` (a saved judge), ``random`` (a random head, smoke tests only),
  ``threshold`` (< 0: the judge's own), ``batch_size``;
- ``llm``: ``base_url`` + ``model`` (an OpenAI-compatible server; the key is read from the
  environment variable named by ``api_key_env`` at request time and never stored), or
  ``model_path`` (a local model: "" = default asset, HF dir, GGUF or train.py run) run by the
  project's sampler, greedy; ``batch_size``, ``max_batch_tokens``, ``max_new_tokens``,
  ``history_lines``, ``max_earlier_lines``, ``max_concurrency``, ``timeout_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_collections import ConfigDict

from persona_jax.evaluation.judging import (
    DistilledLineJudge,
    LineJudge,
    LLMLineJudge,
    judge_thresholds,
    local_generate_fn,
)
from persona_jax.evaluation.sources import load_model_source
from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params
from persona_jax.text.tokenizer import Tokenizer

JUDGES = ("distilled", "llm")


class EvalConfigError(ValueError):
    """A config value that cannot work (names the key)."""


@dataclass
class Base:
    """The frozen base model: the distilled judge's backbone (and the partner's weights)."""

    tokenizer: Tokenizer
    config: LlamaConfig
    params: Params
    description: str


def load_base(base_model: str, *, tiny: bool, seed: int) -> Base:
    """The base model ("" = the default asset), or a tiny random one with the asset's
    tokenizer (``tiny``; the same model ``configs/tiny.py`` trains, for tests)."""
    from persona_jax.train.setup import load_policy

    if tiny:
        from persona_jax.assets import default_model_dir

        tokenizer = Tokenizer.from_pretrained(default_model_dir())
        c = ConfigDict({"model": {"tiny": True, "path": "", "dtype": "float32"}, "seed": seed})
        cfg, params = load_policy(c, tokenizer)
        return Base(tokenizer, cfg, params, f"tiny random model (seed {seed})")
    source = load_model_source(base_model)
    if source.tokenizer_dir is None:
        raise EvalConfigError(f"base_model={base_model!r}: no tokenizer files next to the weights")
    return Base(
        Tokenizer.from_pretrained(source.tokenizer_dir), source.config, source.params,
        source.description,
    )  # fmt: skip


def distilled_judge(d: ConfigDict, base: Base, seed: int) -> DistilledLineJudge:
    from persona_jax.train.setup import RunConfigError, load_judge_for

    if not d.random and not Path(d.path).is_dir():
        raise EvalConfigError(
            f"distilled.path={d.path!r} is not a saved judge directory (train one with "
            "distill_judge.py, or set distilled.random=True for a smoke test)"
        )
    try:
        judge = load_judge_for(d.path, d.random, base.config, base.params, seed, "distilled.path")
    except RunConfigError as e:
        raise EvalConfigError(str(e)) from None
    thresholds = judge_thresholds(None if d.random else d.path, d.threshold)
    return DistilledLineJudge(judge, base.tokenizer, thresholds, batch_size=d.batch_size)


def llm_judge(c: ConfigDict) -> LLMLineJudge:
    from persona_jax.judges.llm import LocalBackend

    if c.base_url:
        from persona_jax.judges.openai_client import OpenAICompatibleBackend

        if not c.model:
            raise EvalConfigError("llm.base_url is set but llm.model (the served model) is empty")
        backend = OpenAICompatibleBackend(
            c.base_url,
            c.model,
            api_key_env=c.api_key_env or None,
            max_tokens=c.max_new_tokens,
            max_concurrency=c.max_concurrency,
            timeout_s=c.timeout_s,
        )
        return LLMLineJudge(backend, backend.to_config(), c.history_lines, c.max_earlier_lines)
    from persona_jax.sampling import Sampler

    source = load_model_source(c.model_path)
    if source.tokenizer_dir is None:
        raise EvalConfigError(f"llm.model_path={c.model_path!r}: no tokenizer files found")
    sampler = Sampler(source.config, source.params, Tokenizer.from_pretrained(source.tokenizer_dir))
    generate = local_generate_fn(sampler, c.max_new_tokens, c.max_batch_tokens)
    backend = LocalBackend(generate, c.batch_size)
    description: dict[str, Any] = {
        "kind": "local",
        "model": source.description,
        "decoding": "greedy (project sampler)",
        "max_new_tokens": c.max_new_tokens,
        "batch_size": c.batch_size,
        "max_batch_tokens": c.max_batch_tokens,
    }
    return LLMLineJudge(backend, description, c.history_lines, c.max_earlier_lines)


def make_judge(c: ConfigDict, base_fn) -> LineJudge:
    """The judge ``c.judge`` names; ``base_fn()`` loads the base model only when needed."""
    if c.judge not in JUDGES:
        raise EvalConfigError(f"judge={c.judge!r}; use one of {JUDGES}")
    if c.judge == "llm":
        return llm_judge(c.llm)
    return distilled_judge(c.distilled, base_fn(), c.seed)


def judge_summary(judge: LineJudge) -> str:
    """One phrase naming the judge, for reports (no secrets: descriptions never hold keys)."""
    d = judge.describe()
    if d["kind"] == "distilled":
        return (
            f"distilled judge {d['source']}, thresholds {d['threshold_prompt_to_line']:.2f} / "
            f"{d['threshold_line_to_line']:.2f}"
        )
    if d["kind"] == "local":
        return f"local LLM {d['model']}, greedy, max {d['max_new_tokens']} new tokens"
    return f"OpenAI-compatible server {d['base_url']}, model {d['model']}"
