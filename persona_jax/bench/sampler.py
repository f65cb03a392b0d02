"""Sampler throughput: our jitted prefill+decode against transformers `generate`.

    python -m persona_jax.bench sampler [--batch 32] [--prompt_len 128] [--new_tokens 64]
        [--model_dir DIR] [--repeats 3] [--baseline transformers|none]
        [--dtype float32|bfloat16] [--random_weights] [--roofline]

Both sides decode greedily with a KV cache and produce exactly `new_tokens` tokens per row
(stop ids disabled for ours, `min_new_tokens` for transformers), from the same weights and
the same random prompts. Tokens/s = batch * new_tokens / wall seconds of the whole call
(prefill + decode), after a warm-up call that pays for compilation. Timed runs of the two
sides alternate, so both see the same background load; the best of `repeats` runs is the
headline figure (the least disturbed by other processes on a shared machine), medians and
process CPU seconds are reported too. Our prefill/decode split is timed separately with the
jitted building blocks. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from persona_jax.models.llama.model import init_cache
from persona_jax.sampling import Sampler, SamplingParams, decode_jit, decode_slots, prefill_jit


class Timings:
    """Wall and process-CPU seconds of repeated runs of one side of the comparison."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def run(self, fn: Callable[[], Any]) -> Any:
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        self.wall.append(time.perf_counter() - t0)
        self.cpu.append(time.process_time() - c0)
        return result


def _device() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{d.device_kind}"


def _torch_device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu ({torch.get_num_threads()} threads)"


def ours_runner(config, params, prompts: np.ndarray, new_tokens: int) -> Callable[[], list]:
    """One end-to-end `Sampler.generate` call per invocation; returns the generated ids."""
    sp = SamplingParams(temperature=0.0, max_new_tokens=new_tokens, stop_ids=())
    sampler = Sampler(config, params)
    rows = prompts.tolist()

    def run() -> list:
        gen = sampler.generate(rows, sp)
        assert all(len(t) == new_tokens for t in gen.tokens)
        return gen.tokens

    return run


def ours_split(config, params, prompts: np.ndarray, new_tokens: int, repeats: int) -> dict:
    """Best prefill and decode seconds, timed apart with the jitted building blocks."""
    batch, prompt_len = prompts.shape
    sp = SamplingParams(temperature=0.0, max_new_tokens=new_tokens, stop_ids=())
    tokens = jax.numpy.asarray(prompts, jax.numpy.int32)
    slots = prompt_len + decode_slots(new_tokens, commit_last=False)
    split: dict[str, list[float]] = {"prefill": [], "decode": []}
    for i in range(repeats + 1):
        cache = jax.block_until_ready(init_cache(config, batch, slots))
        t0 = time.perf_counter()
        cache, logits = jax.block_until_ready(
            prefill_jit(config, params, cache, tokens, fresh=True)
        )
        t1 = time.perf_counter()
        out = decode_jit(config, params, cache, logits, jax.random.key(0), sp, commit_last=False)
        jax.block_until_ready(out)
        t2 = time.perf_counter()
        if i:  # the first round compiles
            split["prefill"].append(t1 - t0)
            split["decode"].append(t2 - t1)
    return {"prefill_s": min(split["prefill"]), "decode_s": min(split["decode"])}


def transformers_runner(model_dir: Path, prompts: np.ndarray, new_tokens: int, dtype: str):
    """One transformers `generate` call (greedy, KV cache, exactly new_tokens) per invocation.

    On a machine with CUDA it runs on the GPU (the same device class as ours), else the CPU.
    """
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(os.cpu_count() or 1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype))
    model = model.eval()
    model = model.to(device)
    ids = torch.as_tensor(prompts, dtype=torch.long, device=device)

    def run() -> list:
        with torch.no_grad():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=0,
            )
        if device == "cuda":
            torch.cuda.synchronize()
        return out[:, prompts.shape[1] :].tolist()

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m persona_jax.bench sampler")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt_len", type=int, default=128)
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--model_dir", type=Path, default=None, help="default: the SmolLM2 asset")
    parser.add_argument(
        "--model",
        default="smollm2",
        help="shape: smollm2 (the real asset or --model_dir), tiny, llama-1b (random weights)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up")
    parser.add_argument("--baseline", choices=("transformers", "none"), default="transformers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="parameter and compute dtype of both sides",
    )
    parser.add_argument(
        "--random_weights",
        action="store_true",
        help="random weights of the --model shape even for smollm2 (throughput only)",
    )
    parser.add_argument(
        "--roofline", action="store_true", help="report the decode memory-bandwidth roofline"
    )
    parser.add_argument(
        "--scan_unroll", type=int, default=1, help="decoder layers per trip of the layer loop"
    )
    args = parser.parse_args(argv)
    if min(args.batch, args.prompt_len, args.new_tokens, args.repeats, args.scan_unroll) < 1:
        parser.error(
            "--batch, --prompt_len, --new_tokens, --repeats and --scan_unroll must be >= 1"
        )

    from persona_jax.weights import load_pretrained

    random_weights = args.model != "smollm2" or args.random_weights
    if random_weights:
        # Random weights of a shape: written once as a HF directory so that transformers
        # generates from exactly the same weights.
        import tempfile

        from persona_jax.bench.shapes import bench_model
        from persona_jax.weights import save_pretrained

        config, params = bench_model(args.model, real=False, dtype=args.dtype)
        args.model_dir = Path(tempfile.mkdtemp(prefix=f"bench-{args.model}-")) / "hf"
        save_pretrained(config, params, args.model_dir)
    else:
        if args.model_dir is None:
            from persona_jax.assets import default_model_dir

            args.model_dir = default_model_dir()
        config, params = load_pretrained(args.model_dir, dtype=args.dtype)
    config = config.replace(scan_unroll=args.scan_unroll)
    # Random ordinary tokens (ids above the special tokens), the same for both sides.
    rng = np.random.default_rng(args.seed)
    low = min(100, config.vocab_size // 2)
    prompts = rng.integers(low, config.vocab_size, (args.batch, args.prompt_len), np.int32)
    n_tok = args.batch * args.new_tokens
    settings = dict(
        model=args.model,
        batch=args.batch,
        prompt_len=args.prompt_len,
        new_tokens=args.new_tokens,
        dtype=args.dtype,
        random_weights=random_weights,
        scan_unroll=args.scan_unroll,
    )
    print(f"sampler benchmark {settings} repeats={args.repeats} device={_device()}")

    # Warm up both sides, then alternate their timed runs so that both see the same load
    # from other processes (on a shared machine it changes by the minute).
    sides: dict[str, Callable[[], list]] = {
        "ours": ours_runner(config, params, prompts, args.new_tokens)
    }
    if args.baseline == "transformers":
        sides["baseline"] = transformers_runner(
            args.model_dir, prompts, args.new_tokens, args.dtype
        )
    timings = {name: Timings() for name in sides}
    outputs = {name: fn() for name, fn in sides.items()}  # warm-up (compilation)
    for _ in range(args.repeats):
        for name, fn in sides.items():
            outputs[name] = timings[name].run(fn)
    split = ours_split(config, params, prompts, args.new_tokens, args.repeats)

    def tok_s(name: str, stat=min) -> float:
        return n_tok / stat(timings[name].wall)

    decode_tok_s = n_tok / split["decode_s"]
    print(
        f"ours:     {tok_s('ours'):8.1f} tok/s (best of {args.repeats}; median "
        f"{tok_s('ours', statistics.median):.1f}); prefill {split['prefill_s']:.3f}s, "
        f"decode {split['decode_s']:.3f}s = {decode_tok_s:.1f} decode tok/s"
    )
    result: dict[str, Any] = {
        "bench": "sampler",
        "ours_tok_s": round(tok_s("ours"), 2),
        "baseline_tok_s": None,
        "ratio": None,
        **settings,
        "device": _device(),
        "ours_tok_s_median": round(tok_s("ours", statistics.median), 2),
        "ours_prefill_s": round(split["prefill_s"], 4),
        "ours_decode_s": round(split["decode_s"], 4),
        "ours_decode_tok_s": round(decode_tok_s, 2),
        "ours_cpu_s": round(min(timings["ours"].cpu), 3),
        "repeats": args.repeats,
    }
    if args.roofline:
        from persona_jax.bench.roofline import decode_report

        figures, line = decode_report(
            config, params, args.batch, args.prompt_len, args.new_tokens, split["decode_s"]
        )
        result.update(figures)
        print(line)
    if "baseline" in sides:
        agree = float(np.mean(np.asarray(outputs["ours"]) == np.asarray(outputs["baseline"])))
        ratio = tok_s("ours") / tok_s("baseline")
        print(
            f"baseline: {tok_s('baseline'):8.1f} tok/s (transformers generate, torch "
            f"{_torch_device()}; median {tok_s('baseline', statistics.median):.1f})"
        )
        print(f"ratio:    {ratio:.2f}x; greedy token agreement {agree:.3f}")
        result.update(
            baseline_tok_s=round(tok_s("baseline"), 2),
            ratio=round(ratio, 3),
            baseline_tok_s_median=round(tok_s("baseline", statistics.median), 2),
            baseline_cpu_s=round(min(timings["baseline"].cpu), 3),
            baseline_device=_torch_device(),
            torch_threads=os.cpu_count(),
            token_agreement=round(agree, 4),
        )
    print(json.dumps(result))
    return 0
