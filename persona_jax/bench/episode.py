"""Episode throughput: incremental KV-cache turns against re-encoding the conversation.

    python -m persona_jax.bench episode [--batch 4] [--turns 2,4,8] [--new_tokens 32]
        [--model_dir DIR] [--repeats 2]

Ours is the jitted `rollout` (each turn prefills only the spliced new tokens into caches
that persist across turns). The baseline plays the same conversation with the same jitted
prefill/decode blocks but rebuilds each model's cache from the whole conversation every
turn, the way a text-in/text-out loop does. Both run the Q&A probe after every policy turn
and sample greedily, so they produce the same tokens. Episodes of several lengths show how
the cost of a turn grows with the turn index: the marginal seconds per turn between the
shortest and longest episode. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from persona_jax.data.partners import load_partners
from persona_jax.data.persona_bank import load_personas
from persona_jax.data.pipelines import episode_records
from persona_jax.envs import tokens as tk
from persona_jax.envs.chat_format import ChatFormat
from persona_jax.envs.episode import EpisodeSpec, _qa_prob, _splice, rollout_jit
from persona_jax.envs.inputs import InputWidths, build_inputs
from persona_jax.models.llama.model import init_cache
from persona_jax.sampling.decode import decode_jit, decode_slots, prefill_jit
from persona_jax.sampling.params import SamplingParams

_qa_jit = jax.jit(_qa_prob, static_argnums=(0, 3))


def reencode_rollout(cfg, params, inputs, spec: EpisodeSpec) -> dict[str, Any]:
    """The baseline: every turn re-prefills the whole conversation into a fresh cache."""
    b = inputs.policy_prompt.shape[0]
    pol = (inputs.policy_prompt, inputs.policy_prompt_mask.astype(bool))
    par = (inputs.partner_prompt, inputs.partner_prompt_mask.astype(bool))
    par_stopped = jnp.zeros((b,), bool)
    n, n2 = spec.policy_sampling.max_new_tokens, spec.partner_sampling.max_new_tokens
    key = jax.random.key(0)
    tokens = 0
    for t in range(spec.num_turns):
        slots = (
            pol[0].shape[1] + decode_slots(n) + spec.splice_len(0, qa_len=inputs.qa_tokens.shape[2])
        )
        cache, logits = prefill_jit(cfg, params, init_cache(cfg, b, slots), *pol)
        cache, out = decode_jit(
            cfg, params, cache, logits, key, spec.policy_sampling, pad_id=spec.pad_id
        )
        _qa_jit(
            cfg,
            params,
            cache,
            spec,
            out.stopped,
            inputs.qa_tokens[:, t],
            inputs.qa_mask[:, t],
            inputs.qa_option_ids[:, t],
            inputs.qa_answer[:, t],
        )
        tokens += int(out.lengths.sum())
        pol = tk.concat([pol, (out.tokens, out.mask)])
        if t == spec.num_turns - 1:
            break
        content = tk.content_mask(out.mask, out.lengths, out.stopped)
        par = tk.concat([par, _splice(spec, par_stopped, out.tokens, content, b)])
        cache = init_cache(cfg, b, par[0].shape[1] + decode_slots(n2))
        cache, logits = prefill_jit(cfg, params, cache, *par)
        cache, pout = decode_jit(
            cfg, params, cache, logits, key, spec.partner_sampling, pad_id=spec.pad_id
        )
        tokens += int(pout.lengths.sum())
        par, par_stopped = tk.concat([par, (pout.tokens, pout.mask)]), pout.stopped
        p_content = tk.content_mask(pout.mask, pout.lengths, pout.stopped)
        pol = tk.concat([pol, _splice(spec, out.stopped, pout.tokens, p_content, b)])
    jax.block_until_ready(pol)
    return {"tokens": tokens}


def _best(fn, repeats: int) -> tuple[float, Any]:
    result = fn()  # compile
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m persona_jax.bench episode")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--turns", default="2,4,8")
    ap.add_argument("--new_tokens", type=int, default=32)
    ap.add_argument("--model_dir", default="")
    ap.add_argument(
        "--model", default="smollm2", help="shape: smollm2 (real asset), tiny, llama-1b"
    )
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument(
        "--random_weights",
        action="store_true",
        help="random weights of the --model shape even for smollm2 (throughput only; the "
        "tokenizer still comes from --model_dir)",
    )
    args = ap.parse_args(argv)

    from persona_jax.assets import default_model_dir
    from persona_jax.bench.shapes import bench_model
    from persona_jax.text.tokenizer import Tokenizer

    model_dir = args.model_dir or str(default_model_dir())
    cfg, params = bench_model(args.model, model_dir, dtype=args.dtype, real=not args.random_weights)
    tok = Tokenizer.from_pretrained(model_dir if args.model == "smollm2" else default_model_dir())
    chat = ChatFormat.from_tokenizer(tok)
    pool = load_personas("patient", "train")
    personas = [pool[i % len(pool)] for i in range(args.batch)]  # repeats past the pool
    partners = load_partners()
    records = episode_records(personas, partners)
    for r in records:
        r["partner_prompt"] = partners["patient"].render_system_prompt()
        r["opening_line"] = partners["patient"].render_opening_line(0)
    batch = {k: [r[k] for r in records] for k in records[0]}
    # Greedy, no stop ids: every turn has exactly new_tokens tokens on both sides, so both
    # implementations do identical work and the turn-length effect is clean.
    sp = SamplingParams(temperature=0.0, max_new_tokens=args.new_tokens, stop_ids=())
    rows = []
    for turns in [int(x) for x in args.turns.split(",")]:
        spec = EpisodeSpec(turns, sp, sp, chat, tok.pad_id)
        inputs = build_inputs(
            batch,
            {p.id: p for p in personas},
            tok,
            chat,
            num_turns=turns,
            widths=InputWidths(),
            pad_id=tok.pad_id,
        )

        def ours(inputs=inputs, spec=spec):
            key = jax.random.key(0)
            return jax.block_until_ready(rollout_jit(cfg, params, cfg, params, inputs, key, spec))

        ours_s, out = _best(ours, args.repeats)
        base_s, base = _best(
            lambda inputs=inputs, spec=spec: reencode_rollout(cfg, params, inputs, spec),
            args.repeats,
        )
        gen = int(np.asarray(out.policy.lengths).sum() + np.asarray(out.partner.lengths).sum())
        assert gen == base["tokens"], (gen, base["tokens"])
        rows.append(
            {
                "turns": turns,
                "ours_s": ours_s,
                "baseline_s": base_s,
                "ours_turns_per_s": turns * args.batch / ours_s,
                "baseline_turns_per_s": turns * args.batch / base_s,
                "ours_tok_s": gen / ours_s,
                "baseline_tok_s": gen / base_s,
                "ratio": base_s / ours_s,
            }
        )
        print(
            f"turns={turns:2d}  ours {ours_s:7.2f}s ({gen / ours_s:7.1f} tok/s)  "
            f"re-encode {base_s:7.2f}s ({gen / base_s:7.1f} tok/s)  ratio {base_s / ours_s:.2f}x"
        )
    first, last = rows[0], rows[-1]
    dt = last["turns"] - first["turns"]
    marginal = {
        "ours_s_per_turn": (last["ours_s"] - first["ours_s"]) / dt if dt else None,
        "baseline_s_per_turn": (last["baseline_s"] - first["baseline_s"]) / dt if dt else None,
    }
    print(
        f"marginal seconds per turn between {first['turns']} and {last['turns']} turns: "
        f"ours {marginal['ours_s_per_turn']}, re-encode {marginal['baseline_s_per_turn']}"
    )
    d = jax.devices()[0]
    print(
        json.dumps(
            {
                "benchmark": "episode",
                "baseline": "re-encode every turn",
                "batch": args.batch,
                "new_tokens": args.new_tokens,
                "rows": rows,
                "marginal": marginal,
                "ours_tok_s": last["ours_tok_s"],
                "baseline_tok_s": last["baseline_tok_s"],
                "ratio": last["ratio"],
                "device": f"{d.platform}:{d.device_kind}",
            }
        )
    )
    return 0
