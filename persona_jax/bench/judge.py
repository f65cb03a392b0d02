"""Judge cost: the distilled judge against the local LLM judge, prompt-to-line, lines/s.

    python -m persona_jax.bench judge [--lines 64] [--model smollm2|tiny|PATH]
        [--judge_dir DIR] [--batch 32] [--llm_batch 8] [--max_new_tokens 160]
        [--verdicts p2l|both] [--compare OTHER_JUDGE_DIR ...] [--whole_dialogues]

Both judges read the same lines on the same device in the same run: by default lines of the
release's held-out test split (``$PERSONA_JAX_CONSISTENT_LLMS_DIR``), or, without the data,
lines made from the persona bank; ``--whole_dialogues`` takes every labelled line of
dialogues drawn in a seeded order instead of uniform draws (how evaluation and agreement runs
judge). Each side is timed from text to verdict after a warm-up that compiles every shape the
timed pass uses (the LLM's warm-up runs one batch per distinct (batch, prompt length) shape;
the timed pass must trigger no compilation, which is checked).

- distilled: tokenise with the judge layout, sort by length, jitted forward per batch of
  ``--batch`` (best of ``--repeats``); also reported from token ids alone, which is how the
  RL step uses it;
- LLM: the project's chat prompt, the base model generating greedily with our sampler,
  ``--llm_batch`` prompts per call, up to ``--max_new_tokens`` tokens, output parsed
  strictly (one timed pass: it is the slow side).

``--verdicts p2l`` (default) asks each side for the prompt-to-line verdict only; ``both`` also
for the line-to-line verdict of every line with an earlier line of its speaker, as the RL
reward uses both. The distilled judge gives both from one forward either way; the LLM judge
needs a second prompt per line, so ``both`` measures the cost of the reward's actual question.

``--compare DIR`` (repeatable) times more distilled judges on the same lines and divides each
by the same LLM run: a trade-off of layers against cost in one measurement.

Without a shipped judge (or with ``--model tiny``) the distilled side runs a random head of
the shipped architecture: its speed is the judge's, its verdicts mean nothing, and the output
says so. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

import persona_jax
from persona_jax.evaluation.lines import LineContext

TARGET_RATIO = 100.0
SHIPPED_DIR = Path(persona_jax.__file__).resolve().parent / "judges" / "shipped"


def _device() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{d.device_kind}"


def released_lines(
    n: int, seed: int, whole_dialogues: bool = False
) -> tuple[list[LineContext], str] | None:
    """``n`` prompt-to-line lines of the release's test split, or None without the data.

    Drawn uniformly by default; with ``whole_dialogues``, every labelled line of dialogues
    drawn in a seeded order (the last one cut at ``n``), as evaluation and agreement runs
    judge them.
    """
    from persona_jax.data.paths import consistent_llms_dir

    root = consistent_llms_dir()
    if not root.is_dir():
        return None
    from persona_jax.evaluation.agreement import load_labelled, sample_lines

    lines, _ = load_labelled(root, split="test")
    lines = [x for x in lines if x.label_p2l is not None]
    origin = "release test split"
    if whole_dialogues:
        dialogues = list(dict.fromkeys(x.dialogue_id for x in lines))
        random.Random(seed).shuffle(dialogues)
        rank = {d: k for k, d in enumerate(dialogues)}
        lines = sorted(lines, key=lambda x: rank[x.dialogue_id])[:n]  # stable: file order within
        origin += f", {len({x.dialogue_id for x in lines})} whole dialogues"
    else:
        lines = sample_lines(lines, n, seed)
    return [x.context for x in lines], f"{origin} ({root})"


def bank_lines(n: int) -> tuple[list[LineContext], str]:
    """Lines made from the persona bank (no released data needed): each held-out persona
    with a sentence of another persona's description as its line, after the partner's
    opening."""
    from persona_jax.data.partners import load_partners
    from persona_jax.data.persona_bank import ROLES, load_personas

    partners = load_partners()
    personas = [p for role in ROLES for p in load_personas(role, "eval")]
    out = []
    for k in range(n):
        p, other = personas[k % len(personas)], personas[(k + 1) % len(personas)]
        sentences = [s.strip() for s in other.description.split(".") if s.strip()]
        line = sentences[k // len(personas) % len(sentences)] + "."
        spec = partners[p.role]
        opening = spec.opening_lines[k % len(spec.opening_lines)].replace("{topic}", "fractions")
        out.append(
            LineContext(
                persona=p.description,
                roles={1: spec.partner, 2: p.role},
                speakers=(1, 2),
                texts=(opening, line),
            )
        )
    return out, "persona bank (no released data found)"


def _load_base(model: str, seed: int):
    from persona_jax.evaluation.factory import load_base

    return load_base("" if model in ("smollm2", "tiny") else model, tiny=model == "tiny", seed=seed)


def _load_judge(base, judge_dir: str | None, seed: int):
    """(judge, head_note): a distilled judge over ``base`` (the shipped one by default)."""
    from persona_jax.judges.distilled import (
        JudgeConfig,
        check_base,
        init_head,
        judge_backbone,
        load_judge,
    )
    from persona_jax.train.setup import Judge

    path = Path(judge_dir) if judge_dir else SHIPPED_DIR
    note = ""
    if (path / "judge_config.json").is_file():
        jcfg, head = load_judge(path)
        try:
            check_base(jcfg, base.config, f"judge {path}")
            source = str(path)
        except ValueError as err:
            if judge_dir:
                raise
            jcfg, head, note = None, None, f"shipped judge does not fit this model ({err})"
    elif judge_dir:
        raise FileNotFoundError(f"--judge_dir {judge_dir}: no judge_config.json there")
    else:
        jcfg, head, note = None, None, f"no shipped judge at {path}"
    if jcfg is None:
        default = JudgeConfig()
        jcfg = JudgeConfig(
            num_layers=min(default.num_layers, base.config.num_layers),
            hidden=default.hidden,
            max_len=default.max_len,
            max_history_lines=default.max_history_lines,
            base_model="random",
            base_vocab_size=base.config.vocab_size,
            base_hidden_size=base.config.hidden_size,
        )
        head = init_head(jcfg, jax.random.key(seed))
        source = "random head"
        note = f"RANDOM HEAD of the shipped architecture: {note}; speed only, verdicts meaningless"
    bcfg, backbone = judge_backbone(jcfg, path, base.config, base.params)
    return Judge(jcfg, bcfg, backbone, head, source), note


def _best(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: compiles every shape
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_distilled(
    judge, contexts: list[LineContext], repeats: int, both: bool = False
) -> dict[str, float]:
    n = len(contexts)
    ask, l2l = [True] * n, [both] * n
    text_s = _best(lambda: judge.judge(contexts, ask, l2l), repeats)
    examples = judge.tokenize(contexts)
    ids_s = _best(lambda: judge.probs_of_tokenized(examples), repeats)
    return {"text_lines_s": n / text_s, "ids_lines_s": n / ids_s, "seconds": text_s}


def _llm_shapes(
    messages: list[list], sampler, batch: int, max_batch_tokens: int, shapes: dict
) -> None:
    """Add to ``shapes`` one request list per (batch, prompt length) shape that sending
    ``messages`` in this order makes the local back end compile."""
    from persona_jax.evaluation.judging import token_budget_groups
    from persona_jax.sampling import batch_bucket, bucket_for

    lengths = [len(sampler.tokenizer.apply_chat_template(m)) for m in messages]
    for start in range(0, len(messages), batch):  # the LocalBackend's chunks, then the groups
        chunk = list(range(start, min(start + batch, len(messages))))
        for group in token_budget_groups([lengths[i] for i in chunk], max_batch_tokens):
            rows = [chunk[g] for g in group]
            key = (
                batch_bucket(len(rows), sampler.batch_buckets),
                bucket_for(max(lengths[i] for i in rows), sampler.prompt_buckets),
            )
            shapes.setdefault(key, [messages[i] for i in rows])


def bench_llm(
    llm,
    sampler,
    contexts: list[LineContext],
    batch: int,
    max_batch_tokens: int,
    both: bool = False,
) -> dict[str, Any]:
    """One timed pass after a warm-up that compiles each (batch, prompt length) shape once."""
    n = len(contexts)
    ask, ask_l2l = [True] * n, [both] * n
    shapes: dict[tuple[int, int], list] = {}
    p2l = llm.llm.prompt_to_line_batch(llm.prompt_to_line_requests(contexts, ask)[1])
    _llm_shapes(p2l, sampler, batch, max_batch_tokens, shapes)
    _, l2l = llm.llm.line_to_line_batch(llm.line_to_line_requests(contexts, ask_l2l)[1])
    _llm_shapes(l2l, sampler, batch, max_batch_tokens, shapes)
    generate = llm.llm.backend.generate_fn
    for chunk in shapes.values():
        generate(chunk)
    compiled = sampler.num_compilations
    t0 = time.perf_counter()
    verdicts = llm.judge(contexts, ask, ask_l2l)
    seconds = time.perf_counter() - t0
    return {
        "lines_s": n / seconds,
        "seconds": seconds,
        "unparsed": sum(v.p2l_unparsed for v in verdicts),
        "l2l_asked": len(l2l),
        "l2l_unparsed": sum(v.l2l_unparsed for v in verdicts),
        "warmup_shapes": len(shapes),
        "compilations_in_timed_pass": sampler.num_compilations - compiled,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m persona_jax.bench judge")
    parser.add_argument("--lines", type=int, default=64)
    parser.add_argument(
        "--model", default="smollm2", help="smollm2 (default asset), tiny (random), or a path"
    )
    parser.add_argument("--judge_dir", default=None, help="default: the shipped judge")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="DIR",
        help="another distilled judge, timed on the same lines against the same LLM run "
        "(repeatable), e.g. one with fewer base layers",
    )
    parser.add_argument("--batch", type=int, default=32, help="distilled judge batch")
    parser.add_argument("--llm_batch", type=int, default=8, help="LLM judge prompts per call")
    parser.add_argument("--max_new_tokens", type=int, default=160)
    parser.add_argument("--max_batch_tokens", type=int, default=16384)
    parser.add_argument("--history_lines", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="distilled timed runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--whole_dialogues",
        action="store_true",
        help="lines of whole dialogues (as evaluations judge them) instead of uniform draws",
    )
    parser.add_argument(
        "--verdicts",
        choices=("p2l", "both"),
        default="p2l",
        help="p2l: prompt-to-line only; both: also line-to-line (what the RL reward asks)",
    )
    args = parser.parse_args(argv)
    both = args.verdicts == "both"
    if min(args.lines, args.batch, args.llm_batch, args.max_new_tokens, args.repeats) < 1:
        parser.error("--lines, --batch, --llm_batch, --max_new_tokens, --repeats must be >= 1")

    from persona_jax.evaluation.judging import (
        DistilledLineJudge,
        LLMLineJudge,
        judge_thresholds,
        local_generate_fn,
    )
    from persona_jax.judges.llm import LocalBackend
    from persona_jax.sampling import Sampler

    found = released_lines(args.lines, args.seed, args.whole_dialogues)
    contexts, origin = found if found is not None else bank_lines(args.lines)
    base = _load_base(args.model, args.seed)
    judge, note = _load_judge(base, args.judge_dir, args.seed)
    others = [_load_judge(base, path, args.seed)[0] for path in args.compare]
    thresholds = judge_thresholds(None if note else judge.source)
    distilled = DistilledLineJudge(judge, base.tokenizer, thresholds, batch_size=args.batch)
    sampler = Sampler(base.config, base.params, base.tokenizer)
    generate = local_generate_fn(sampler, args.max_new_tokens, args.max_batch_tokens)
    backend = LocalBackend(generate, args.llm_batch)
    llm = LLMLineJudge(backend, {"kind": "local", "model": base.description}, args.history_lines)

    print(
        f"judge benchmark: {len(contexts)} prompt-to-line lines from {origin}; "
        f"model {base.description}; device {_device()}"
    )
    print(
        f"distilled judge: {judge.source}, {judge.cfg.num_layers} base layers, batch {args.batch}"
    )
    if note:
        print(f"note: {note}")
    d = bench_distilled(distilled, contexts, args.repeats, both)
    print(
        f"distilled: {d['text_lines_s']:10.1f} lines/s from text (best of {args.repeats}); "
        f"{d['ids_lines_s']:.1f} lines/s from token ids (as in the RL step)"
    )
    compared = []
    for other in others:
        line_judge = DistilledLineJudge(
            other, base.tokenizer, judge_thresholds(other.source), batch_size=args.batch
        )
        c = bench_distilled(line_judge, contexts, args.repeats, both)
        compared.append({"judge": other.source, "num_layers": other.cfg.num_layers, **c})
        print(
            f"  compare: {c['text_lines_s']:10.1f} lines/s from text, {c['ids_lines_s']:.1f} "
            f"from token ids: {other.source} ({other.cfg.num_layers} base layers)"
        )
    g = bench_llm(llm, sampler, contexts, args.llm_batch, args.max_batch_tokens, both)
    l2l_note = f"; line-to-line {g['l2l_unparsed']}/{g['l2l_asked']} unreadable" if both else ""
    print(
        f"LLM judge: {g['lines_s']:10.3f} lines/s (greedy, batch {args.llm_batch}, <= "
        f"{args.max_new_tokens} new tokens; prompt-to-line {g['unparsed']}/{len(contexts)} "
        f"unreadable{l2l_note}; {g['compilations_in_timed_pass']} compilations in the timed pass)"
    )
    ratio = d["text_lines_s"] / g["lines_s"]
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    target = f"target >= {TARGET_RATIO:.0f}x: {verdict}"
    print(f"ratio:     {ratio:.1f}x, {args.verdicts} verdicts ({target})")
    for c in compared:
        c["ratio"] = c["text_lines_s"] / g["lines_s"]
        print(f"  compare: {c['ratio']:.1f}x, {c['judge']}")
    result = {
        "bench": "judge",
        "lines": len(contexts),
        "lines_from": origin,
        "model": base.description,
        "device": _device(),
        "distilled_judge": judge.source,
        "distilled_layers": judge.cfg.num_layers,
        "random_head": bool(note),
        "distilled_lines_s": round(d["text_lines_s"], 2),
        "distilled_ids_lines_s": round(d["ids_lines_s"], 2),
        "whole_dialogues": args.whole_dialogues,
        "llm_lines_s": round(g["lines_s"], 4),
        "verdicts": args.verdicts,
        "llm_unparsed": g["unparsed"],
        "llm_l2l_asked": g["l2l_asked"],
        "llm_l2l_unparsed": g["l2l_unparsed"],
        "llm_compilations_in_timed_pass": g["compilations_in_timed_pass"],
        "ratio": round(ratio, 2),
        "target_ratio": TARGET_RATIO,
        "target_met": bool(ratio >= TARGET_RATIO),
        "batch": args.batch,
        "llm_batch": args.llm_batch,
        "max_new_tokens": args.max_new_tokens,
        "max_batch_tokens": args.max_batch_tokens,
        "repeats": args.repeats,
        "compared": [
            {
                "judge": c["judge"],
                "num_layers": c["num_layers"],
                "distilled_lines_s": round(c["text_lines_s"], 2),
                "distilled_ids_lines_s": round(c["ids_lines_s"], 2),
                "ratio": round(c["ratio"], 2),
                "target_met": bool(c["ratio"] >= TARGET_RATIO),
            }
            for c in compared
        ],
    }
    print(json.dumps(result))
    return 0
