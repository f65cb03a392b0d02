"""The adapter-judge run: pack the labelled lines, fine-tune, select on validation, test once.

    python distill_judge.py --config=configs/judge.py --mode=pack       # needs the release
    python distill_judge.py --config=configs/judge.py --mode=finetune   # needs only the pack

Every candidate (`finetune.sweep[<train_on>]` for each training set in `finetune.train_on`,
or `finetune.sweep` itself when it is one tuple for all; candidate i trains with seed
`seed + i`) is trained with early stopping on validation prompt-to-line kappa; the best
candidate of each training set by that kappa gets its thresholds from validation and is then
scored on test, once. The judges are written in the shipped-judge layout (config, head,
adapters, metrics.json) to `finetune.export[<train_on>]` (by default the shipped judges:
all -> `judges/shipped`, half_b -> `judges/shipped_eval`), or to
`<finetune.out_dir>/<train_on>/` for a training set not named there; the run's every number
goes to `<finetune.out_dir>/results.json`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from ml_collections import ConfigDict

from persona_jax.judges.distilled import JudgeConfig, save_judge, truncate_backbone
from persona_jax.judges.finetune import FinetuneConfig, finetune, probs_of, rows_of
from persona_jax.judges.lora import num_params
from persona_jax.judges.pack import Pack
from persona_jax.judges.train_head import LabelledFeatures, evaluate, val_kappa


def _model_dir(c: ConfigDict) -> Path:
    from persona_jax.assets import default_model_dir

    return Path(c.model_path) if c.model_path else default_model_dir()


def run_pack(c: ConfigDict) -> Path:
    """Tokenise every judged line of the release (doubtful files included) into a pack."""
    from persona_jax.judges.data import judge_records
    from persona_jax.judges.distill import _base_name, _data_dir
    from persona_jax.text.tokenizer import Tokenizer

    f = c.features
    records = judge_records(_data_dir(c), max_history_lines=f.max_history_lines, exclude_sources=())
    tokenizer = Tokenizer.from_pretrained(_model_dir(c))
    meta = {"tokenizer": _base_name(c), "vocab_size": tokenizer.vocab_size}
    t0 = time.perf_counter()
    from persona_jax.judges.pack import pack_records

    pack = pack_records(records, tokenizer, f.max_len, f.max_history_lines, meta)
    path = pack.save(c.finetune.pack)
    print(
        f"packed {len(pack)} records, {len(pack.tokens)} tokens in "
        f"{time.perf_counter() - t0:.1f}s -> {path} ({path.stat().st_size / 2**20:.1f} MB)",
        flush=True,
    )
    return path


def _labelled(pack: Pack, rows: np.ndarray) -> LabelledFeatures:
    return LabelledFeatures(
        np.zeros((len(rows), 0), np.float32),
        pack.y[rows].astype(np.int32),
        pack.task[rows],
        pack.persona[rows],
    )


def candidates(sweep: Any, train_on: str) -> tuple[dict[str, Any], ...]:
    """The candidate overrides of one training set: `sweep` is one tuple for every set, or a
    mapping from training set to its tuple (so each shipped judge's recipe is reproducible)."""
    if isinstance(sweep, (tuple, list)):
        rows = sweep
    else:
        try:
            rows = sweep[train_on]
        except (KeyError, AttributeError):
            raise ValueError(f"finetune.sweep has no candidates for {train_on!r}") from None
    if not rows:
        raise ValueError(f"finetune.sweep[{train_on!r}] is empty; give at least ({{}},)")
    return tuple(dict(r) for r in rows)


def run_finetune(c: ConfigDict) -> dict[str, Any]:
    """Sweep, select and export adapter judges; results to `<finetune.out_dir>/results.json`."""
    from persona_jax.weights import load_pretrained

    f = c.finetune
    pack = Pack.load(f.pack)
    base_cfg, params = load_pretrained(_model_dir(c))
    if pack.meta.get("vocab_size") not in (None, base_cfg.vocab_size):
        raise ValueError(
            f"{f.pack} was tokenised for vocab {pack.meta['vocab_size']}, the base model has "
            f"{base_cfg.vocab_size}"
        )
    bcfg, backbone = truncate_backbone(base_cfg, params, f.num_layers)
    del params
    exclude = pack.meta["doubtful_sources"] if c.data.exclude_doubtful else []
    val_rows = rows_of(pack, "validation", exclude=exclude)
    test_rows = rows_of(pack, "test", exclude=exclude)
    out_dir = Path(f.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}",
        "pack": str(f.pack),
        "records": len(pack),
        "runs": [],
        "chosen": {},
    }
    save = lambda: (out_dir / "results.json").write_text(
        json.dumps(results, indent=1, default=float) + "\n"
    )
    base = f.defaults.to_dict()
    for train_on in f.train_on:
        train_rows = rows_of(pack, "train", train_on, exclude)
        cands = []
        for i, override in enumerate(candidates(f.sweep, train_on)):
            ft = FinetuneConfig(**{**base, **override})
            jc = JudgeConfig(
                num_layers=f.num_layers,
                hidden=ft.hidden,
                max_len=int(pack.meta["max_len"]),
                max_history_lines=int(pack.meta["max_history_lines"]),
                base_model=str(pack.meta.get("tokenizer", "")),
                base_vocab_size=base_cfg.vocab_size,
                base_hidden_size=base_cfg.hidden_size,
                pools=tuple(f.pools),
                lora_rank=ft.rank,
                lora_alpha=ft.alpha,
            )
            trainable, stats, log = finetune(
                ft,
                jc,
                bcfg,
                backbone,
                pack,
                train_rows,
                val_rows,
                seed=c.seed + i,
                ckpt_dir=out_dir / "ckpt" / f"{train_on}_{ft.name}",
                desc=f"{train_on} {ft.name}",
            )
            p_val = probs_of(
                bcfg, backbone, trainable, stats, ft.alpha / ft.rank, pack, val_rows, jc.pools
            )
            y_val = pack.y[val_rows].astype(np.int32)
            (k0, t0), (k1, t1) = val_kappa(y_val, p_val, 0), val_kappa(y_val, p_val, 1)
            entry = {
                "train_on": train_on,
                "name": ft.name,
                "config": dataclasses.asdict(ft),
                "train_rows": len(train_rows),
                "val_kappa_p2l": k0,
                "val_kappa_l2l": k1,
                "thresholds": [t0, t1],
                "lora_params": num_params(trainable["lora"]),
                **log,
            }
            results["runs"].append(entry)
            save()
            cands.append((k0, i, ft, jc, trainable, stats, p_val, entry))
        k0, i, ft, jc, trainable, stats, p_val, entry = max(cands, key=lambda t: (t[0], -t[1]))
        p_test = probs_of(
            bcfg, backbone, trainable, stats, ft.alpha / ft.rank, pack, test_rows, jc.pools
        )
        th = entry["thresholds"]
        chosen = {
            "name": ft.name,
            "config": dataclasses.asdict(ft),
            "train_personas": len(set(pack.persona[train_rows].tolist())),
            "thresholds": th,
            "validation": evaluate(_labelled(pack, val_rows), p_val, th),
            "test": evaluate(_labelled(pack, test_rows), p_test, th),
        }
        results["chosen"][train_on] = chosen
        head = {k: np.asarray(v) for k, v in {**trainable["head"], **stats}.items()}
        headline = {
            split: {
                h: {m: chosen[split]["all"][h][m] for m in ("kappa", "accuracy", "f1", "n")}
                for h in chosen[split]["all"]
            }
            for split in ("validation", "test")
        }
        export = dict(f.get("export", {}) or {})
        judge_dir = Path(export.get(train_on) or out_dir / train_on)
        save_judge(
            judge_dir,
            jc,
            head,
            extra={
                "threshold_prompt_to_line": th[0],
                "threshold_line_to_line": th[1],
                "variant": ft.name,
                "ensemble_of": 1,
                "trained_on": train_on,
                "train_personas": chosen["train_personas"],
                "excluded_sources": list(exclude),
                "metrics": headline,
            },
            lora={
                t: {k: np.asarray(v) for k, v in ab.items()} for t, ab in trainable["lora"].items()
            },
        )
        (judge_dir / "metrics.json").write_text(
            json.dumps(
                {
                    "judge": chosen,
                    "runs": [r for r in results["runs"] if r["train_on"] == train_on],
                    "device": results["device"],
                    "pack": results["pack"],
                    "records": results["records"],
                },
                indent=1,
                default=float,
            )
            + "\n"
        )
        results["chosen"][train_on]["dir"] = str(judge_dir)
        save()
    summary = {
        train_on: {
            "name": ch["name"],
            "val_kappa_p2l": ch["validation"]["all"]["prompt_to_line"]["kappa"],
            "test_kappa_p2l": ch["test"]["all"]["prompt_to_line"]["kappa"],
            "test_kappa_l2l": ch["test"]["all"]["line_to_line"]["kappa"],
        }
        for train_on, ch in results["chosen"].items()
    }
    print(json.dumps(summary, default=float), flush=True)
    return results
