"""RL update throughput against a PyTorch forward+backward of the same model shape and batch.

    python -m persona_jax.bench update [--model smollm2|llama-1b|tiny] [--batch 4]
        [--seq_len 512] [--algorithm ppo] [--dtype float32|bfloat16] [--repeats 3]

Ours is the whole jitted RL update (reference forward, behaviour/critic forward when the
algorithm needs one, then forward+backward+AdamW on the policy-gradient loss) on a synthetic
episode batch in which half the tokens are policy actions. The baseline is one PyTorch
forward and backward (cross-entropy over all tokens, AdamW step) of `transformers`'
LlamaForCausalLM with the same shape, batch and length. Tokens/s = batch * seq_len / wall
seconds. Model FLOPs utilisation is reported when the device's peak is known (`--peak_tflops`
or an H100/H200). Random weights: only the shape matters. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np
from flax import nnx

from persona_jax.bench.shapes import SHAPES
from persona_jax.models.llama import Llama, LlamaConfig
from persona_jax.rl.state import RLConfig, init_train_state
from persona_jax.rl.update import Batch, update

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}  # dense bf16


def synthetic_batch(batch: int, seq_len: int, vocab: int, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    seq = rng.integers(3, vocab, (batch, seq_len)).astype(np.int32)
    mask = np.ones((batch, seq_len), bool)
    act = np.zeros((batch, seq_len), bool)
    act[:, seq_len // 2 :] = True  # the second half: the policy's turns
    rewards = np.where(act & (rng.random((batch, seq_len)) < 0.05), 1.0, 0.0).astype(np.float32)
    behaviour = np.where(act, -2.0, 0.0).astype(np.float32)
    return Batch(seq, mask, act, rewards, behaviour)


def model_flops_per_token(cfg: LlamaConfig, seq_len: int) -> float:
    """6N (weights, fwd+bwd) plus attention scores, per token."""
    n = cfg.num_params - cfg.vocab_size * cfg.hidden_size * (1 if cfg.tie_word_embeddings else 0)
    n += cfg.vocab_size * cfg.hidden_size  # the LM head matmul runs even when tied
    attn = 6 * cfg.num_layers * cfg.num_heads * cfg.head_dim * seq_len
    return 6.0 * n + attn


def bench_ours(cfg: LlamaConfig, rl: RLConfig, batch: Batch, repeats: int) -> float:
    params = Llama(cfg, rngs=nnx.Rngs(0)).params()
    state, tx = init_train_state(rl, cfg, params, seed=0)
    step = jax.jit(lambda s, b, r: update(s, b, r, cfg=cfg, rl=rl, tx=tx), donate_argnums=0)
    state, m = step(state, batch, params)
    jax.block_until_ready(m)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, m = step(state, batch, params)
        jax.block_until_ready(m)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_torch(cfg: LlamaConfig, batch: Batch, repeats: int, dtype: str) -> float:
    import torch
    from transformers import LlamaConfig as HFConfig
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    hf = HFConfig(**{k: v for k, v in cfg.to_hf_dict().items() if k not in ("architectures",)})
    model = LlamaForCausalLM(hf).to(device=device, dtype=getattr(torch, dtype)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.as_tensor(np.asarray(batch.sequence), dtype=torch.long, device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    step()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m persona_jax.bench update")
    ap.add_argument("--model", choices=sorted(SHAPES), default="smollm2")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq_len", type=int, default=512)
    ap.add_argument("--algorithm", default="ppo")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peak_tflops", type=float, default=0.0)
    ap.add_argument("--baseline", default="torch", choices=["torch", "none"])
    ap.add_argument("--remat", action="store_true", help="recompute activations (rl.remat)")
    args = ap.parse_args(argv)

    cfg = LlamaConfig(**SHAPES[args.model], dtype=args.dtype, param_dtype="float32")
    rl = RLConfig(
        algorithm=args.algorithm,
        group_size=2 if args.algorithm in ("rloo", "grpo") else 1,
        remat=args.remat,
    )
    batch = synthetic_batch(args.batch, args.seq_len, cfg.vocab_size)
    tokens = args.batch * args.seq_len
    ours_s = bench_ours(cfg, rl, batch, args.repeats)
    base_s = bench_torch(cfg, batch, args.repeats, args.dtype) if args.baseline == "torch" else None
    d = jax.devices()[0]
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in d.device_kind), 0.0)
    flops = model_flops_per_token(cfg, args.seq_len) * tokens
    result = {
        "benchmark": "update",
        "baseline": "PyTorch forward+backward+AdamW (transformers)",
        "model": args.model,
        "params": cfg.num_params,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "algorithm": args.algorithm,
        "dtype": args.dtype,
        "remat": args.remat,
        "ours_s": ours_s,
        "ours_tok_s": tokens / ours_s,
        "baseline_s": base_s,
        "baseline_tok_s": tokens / base_s if base_s else None,
        "ratio": base_s / ours_s if base_s else None,
        "ours_mfu": flops / ours_s / (peak * 1e12) if peak else None,
        "baseline_mfu": flops / base_s / (peak * 1e12) if peak and base_s else None,
        "device": f"{d.platform}:{d.device_kind}",
    }
    print(
        f"ours {tokens / ours_s:.1f} tok/s ({ours_s:.2f}s)"
        + (
            f"  torch {tokens / base_s:.1f} tok/s ({base_s:.2f}s)  ratio {base_s / ours_s:.2f}x"
            if base_s
            else ""
        )
    )
    print(json.dumps(result))
    return 0
