"""Ask the default model to speak as a few personas: a quick end-to-end smoke check.

    python -m persona_jax.demo [--model_dir DIR] [--max_new_tokens 96] [--temperature 0.7]

Each prompt is a system message holding a persona description plus one user message, the
same shape the RL episodes use for the simulated user's turn. `run_demo` takes the
(system, user) pairs as an argument so persona-bank entries can be passed in directly.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from persona_jax.sampling import Generation, Sampler, SamplingParams

DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (
    (
        "You are Maria, a 34-year-old night-shift nurse from Lisbon. You are warm but tired, "
        "you love hiking on your days off, and you speak in short, direct sentences.",
        "How has your week been?",
    ),
    (
        "You are Tom, a 15-year-old student who finds algebra confusing but loves football. "
        "You answer honestly and a little shyly.",
        "Can you explain what you did not understand in today's lesson?",
    ),
    (
        "You are Evelyn, a 71-year-old retired librarian who has just moved to a new town "
        "and feels a bit lonely. You are polite and curious.",
        "What do you like to do in the evenings?",
    ),
)


def conversations(pairs: Sequence[tuple[str, str]]) -> list[list[dict[str, str]]]:
    """Chat messages [system persona, user question] for each (system, user) pair."""
    return [
        [{"role": "system", "content": system}, {"role": "user", "content": user}]
        for system, user in pairs
    ]


def run_demo(
    pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRS,
    *,
    model_dir: str | Path | None = None,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    out=sys.stdout,
) -> Generation:
    """Answer every (system persona, user message) pair with the model; print and return."""
    from persona_jax.text import Tokenizer
    from persona_jax.weights import load_pretrained

    if not pairs:
        raise ValueError("run_demo needs at least one (system, user) pair")
    if model_dir is None:
        from persona_jax.assets import default_model_dir

        model_dir = default_model_dir()
    tokenizer = Tokenizer.from_pretrained(model_dir)
    config, params = load_pretrained(model_dir)
    if sampling is None:
        sampling = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=96)
    if not sampling.stop_ids:
        sampling = sampling.replace(stop_ids=tokenizer.stop_ids)
    sampler = Sampler(config, params, tokenizer, seed=seed)
    t0 = time.perf_counter()
    gen = sampler.chat(conversations(pairs), sampling)
    elapsed = time.perf_counter() - t0
    assert gen.texts is not None
    for (system, user), text, n in zip(pairs, gen.texts, gen.lengths, strict=True):
        print(
            f"--- persona: {system}\n>>> user: {user}\n<<< reply ({n} tokens): {text}\n", file=out
        )
    print(f"{int(gen.lengths.sum())} tokens in {elapsed:.1f}s (incl. compilation)", file=out)
    return gen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m persona_jax.demo", description=__doc__)
    parser.add_argument("--model_dir", type=Path, default=None, help="default: SmolLM2 asset")
    parser.add_argument("--max_new_tokens", type=int, default=96)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top_p", type=float, default=0.9)
    parser.add_argument("--top_k", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sampling = SamplingParams(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
    )
    run_demo(model_dir=args.model_dir, sampling=sampling, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
