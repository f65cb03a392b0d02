"""The distillation run: extract features, sweep depth on validation, ship two judges.

Everything tuned (depth, pooling, width, training data, thresholds, epochs) is chosen on the
validation split; the test split is scored once, for the judges that are written out and
for the variants recorded beside them (trained with the doubtful therapy files, or on every
training persona when the reward judge is not), and by nothing else.

The evaluation judge is trained on half B of the training personas (`data.half_of`, a salted
hash of the persona group); the reward judge on every training persona by default
(`export.reward_data = "all"`), or on half A ("half_a") so that RL results are judged by a
head that never saw the reward's labels, at a cost in reward quality.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from ml_collections import ConfigDict

from persona_jax.judges.data import (
    DOUBTFUL_SOURCES,
    JudgeRecord,
    base_rates,
    half_of,
    judge_records,
)
from persona_jax.judges.distilled import DEFAULT_POOLS, HEADS, JudgeConfig, save_judge
from persona_jax.judges.features import POOLS, extract, features_for, load_cache
from persona_jax.judges.report import render
from persona_jax.judges.train_head import (
    Head,
    HeadConfig,
    LabelledFeatures,
    evaluate,
    merge_heads,
    predict,
    train_head,
    val_kappa,
)
from persona_jax.metrics.agreement import best_threshold


def _data_dir(c: ConfigDict) -> Path:
    from persona_jax.data.paths import consistent_llms_dir

    root = Path(c.data_dir) if c.data_dir else consistent_llms_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: the released consistent-LLMs data folder is missing")
    return root


def _model_dir(c: ConfigDict) -> Path:
    from persona_jax.assets import default_model_dir

    return Path(c.model_path) if c.model_path else default_model_dir()


def _base_name(c: ConfigDict) -> str:
    from persona_jax.assets import ASSET_NAME

    return ASSET_NAME if not c.model_path else Path(c.model_path).name


def run_extract(c: ConfigDict) -> Path:
    """Cache the frozen base's features of every record (doubtful files included, last)."""
    from persona_jax.text.tokenizer import Tokenizer
    from persona_jax.weights import load_pretrained

    f = c.features
    records = judge_records(_data_dir(c), max_history_lines=f.max_history_lines, exclude_sources=())
    tokenizer = Tokenizer.from_pretrained(_model_dir(c))
    base_cfg, params = load_pretrained(_model_dir(c))
    return extract(
        records,
        tokenizer,
        tokenizer.pad_id,
        base_cfg,
        params,
        f.cache_dir,
        depths=tuple(f.depths),
        max_len=f.max_len,
        max_history_lines=f.max_history_lines,
        batch_size=f.batch_size,
        chunk_size=f.chunk_size,
        first=lambda r: r.source not in DOUBTFUL_SOURCES,
        base_name=_model_dir(c).name,
        log=lambda s: print(s, flush=True),
    )


@dataclasses.dataclass(frozen=True)
class Variant:
    """What a head reads, how it is trained and on which lines."""

    depths: tuple[int, ...]
    pools: tuple[str, ...] = DEFAULT_POOLS
    hidden: int = 256
    standardize: bool = False
    learning_rate: float = 1e-3
    dropout: float = 0.1
    train_on: str = "all"  # all | half_a | half_b
    with_doubtful: bool = False

    @property
    def deployable(self) -> bool:
        """Whether `distilled.features` computes what the head reads: one depth, any pools."""
        return len(self.depths) == 1 and all(p in POOLS for p in self.pools)

    @property
    def name(self) -> str:
        d = "+".join(map(str, self.depths))
        p = "+".join(self.pools)
        z = "_z" if self.standardize else ""
        extra = "_doubtful" if self.with_doubtful else ""
        return (
            f"k{d}_{p}_h{self.hidden}{z}_lr{self.learning_rate:g}_do{self.dropout:g}"
            f"_{self.train_on}{extra}"
        )


class Bench:
    """The cached features joined to their records, with the masks every variant needs."""

    def __init__(self, records: list[JudgeRecord], feats: np.ndarray, manifest: dict[str, Any]):
        self.records, self.feats, self.manifest = records, feats, manifest
        self.split = np.asarray([r.split for r in records])
        self.doubtful = np.asarray([r.source in DOUBTFUL_SOURCES for r in records])
        self.half = np.asarray([half_of(r.group) for r in records])

    def matrix(self, v: Variant) -> np.ndarray:
        depths, pools = self.manifest["depths"], list(POOLS)
        blocks = [
            self.feats[:, depths.index(k), [pools.index(p) for p in v.pools]].reshape(
                len(self.records), -1
            )
            for k in v.depths
        ]
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def rows(self, split: str, v: Variant, *, train_subset: bool = False) -> np.ndarray:
        keep = self.split == split
        if not v.with_doubtful:
            keep &= ~self.doubtful
        if train_subset and v.train_on != "all":
            keep &= self.half == {"half_a": "A", "half_b": "B"}[v.train_on]
        return keep

    def data(self, x: np.ndarray, keep: np.ndarray) -> LabelledFeatures:
        kept = [r for r, k in zip(self.records, keep, strict=True) if k]
        return LabelledFeatures.of(kept, x[keep])

    def splits(self, v: Variant) -> tuple[np.ndarray, LabelledFeatures, LabelledFeatures]:
        """Features, train rows of `v`, and the validation rows (never the doubtful files)."""
        x = self.matrix(v)
        clean = dataclasses.replace(v, with_doubtful=False)
        train = self.data(x, self.rows("train", v, train_subset=True))
        return x, train, self.data(x, self.rows("validation", clean))


def _jc(c: ConfigDict, v: Variant, bench: Bench) -> JudgeConfig:
    return JudgeConfig(
        num_layers=max(v.depths),
        hidden=v.hidden,
        max_len=c.features.max_len,
        max_history_lines=c.features.max_history_lines,
        base_model=_base_name(c),
        base_hidden_size=bench.manifest["hidden_size"],
        pools=v.pools,
    )


def _head_config(c: ConfigDict, v: Variant) -> HeadConfig:
    h = c.head
    return HeadConfig(
        hidden=v.hidden,
        learning_rate=v.learning_rate,
        weight_decay=h.weight_decay,
        dropout=v.dropout,
        batch_size=h.batch_size,
        epochs=h.epochs,
        patience=h.patience,
        l2l_weight=h.l2l_weight,
        standardize=v.standardize,
    )


def _ensemble(
    c: ConfigDict,
    bench: Bench,
    v: Variant,
    train: LabelledFeatures,
    val: LabelledFeatures,
    seeds: range,
    ckpt_root: Path | None = None,
) -> tuple[list[Head], list[dict[str, Any]]]:
    """One head per seed (early-stopped on validation), with a log line per seed."""
    heads, runs = [], []
    for seed in seeds:
        t0 = time.perf_counter()
        head, log = train_head(
            _head_config(c, v),
            _jc(c, v, bench),
            train,
            val,
            seed=seed,
            ckpt_dir=None if ckpt_root is None else ckpt_root / f"seed{seed}",
            desc=f"{v.name}/s{seed}",
        )
        p = predict(head, val.x)
        heads.append(head)
        runs.append(
            {
                "seed": seed,
                "best_epoch": log["best_epoch"],
                "val_kappa_p2l": val_kappa(val.y, p, 0)[0],
                "val_kappa_l2l": val_kappa(val.y, p, 1)[0],
                "seconds": time.perf_counter() - t0,
                "epochs": log["epochs"],
            }
        )
    return heads, runs


def sweep(c: ConfigDict, bench: Bench, v: Variant) -> dict[str, Any]:
    """Validation-only score of a variant: best-threshold kappa of each seed's head (mean ±
    std) and of their merged ensemble, which is what would ship."""
    _, train, val = bench.splits(v)
    heads, runs = _ensemble(c, bench, v, train, val, range(c.ensemble))
    pe = predict(merge_heads(heads), val.x)
    out: dict[str, Any] = {
        "variant": v.name,
        "spec": dataclasses.asdict(v),
        "deployable": v.deployable,
        "n_train": len(train),
    }
    for h, key in enumerate(("val_kappa_p2l", "val_kappa_l2l")):
        vals = [r[key] for r in runs]
        out[key] = {
            "mean": float(np.mean(vals)),
            "std": float(np.std(vals)),
            "ensemble": val_kappa(val.y, pe, h)[0],
        }
    out["runs"] = [{k: x for k, x in r.items() if k != "epochs"} for r in runs]
    k1, k2 = out["val_kappa_p2l"], out["val_kappa_l2l"]
    print(
        f"{v.name}: val kappa p2l {k1['mean']:.3f}±{k1['std']:.3f} (ensemble {k1['ensemble']:.3f})"
        f" l2l {k2['mean']:.3f}±{k2['std']:.3f} (ensemble {k2['ensemble']:.3f})",
        flush=True,
    )
    return out


def final(
    c: ConfigDict, bench: Bench, v: Variant, out_dir: str | None, role: str
) -> dict[str, Any]:
    """Train a judge (a merged ensemble of `c.ensemble` checkpointed seeds), pick thresholds
    on validation, score test once, and write it to `out_dir`."""
    x, train, val = bench.splits(v)
    t0 = time.perf_counter()
    ckpt_root = Path(c.workdir).absolute() / "ckpt" / f"{role}_{v.name}"
    heads, runs = _ensemble(c, bench, v, train, val, range(c.ensemble), ckpt_root)
    head = merge_heads(heads)
    seconds = time.perf_counter() - t0
    jc = dataclasses.replace(_jc(c, v, bench), hidden=int(head["w1"].shape[1]))
    pv = predict(head, val.x)
    known = [val.y[:, h] >= 0 for h in (0, 1)]
    thresholds = [round(best_threshold(val.y[k, h], pv[k, h])[0], 2) for h, k in enumerate(known)]
    rows = bench.rows("train", v, train_subset=True)
    result: dict[str, Any] = {
        "role": role,
        "variant": v.name,
        "spec": dataclasses.asdict(v),
        "ensemble": c.ensemble,
        "train_rows": len(train),
        "train_personas": len(
            {r.persona_id for r, k in zip(bench.records, rows, strict=True) if k}
        ),
        "train_groups": len({r.group for r, k in zip(bench.records, rows, strict=True) if k}),
        "best_epochs": [r["best_epoch"] for r in runs],
        "train_seconds": seconds,
        "thresholds": {"prompt_to_line": thresholds[0], "line_to_line": thresholds[1]},
        "validation": evaluate(val, pv, thresholds),
    }
    clean = dataclasses.replace(v, with_doubtful=False)
    test = bench.data(x, bench.rows("test", clean))
    result["test"] = evaluate(test, predict(head, test.x), thresholds)
    every_test = bench.split == "test"
    if bench.doubtful[every_test].any():
        every = bench.data(x, every_test)
        result["test_with_doubtful"] = evaluate(every, predict(head, every.x), thresholds)
    result["seed_runs"] = runs
    if out_dir:
        headline = {
            split: {
                h: {m: result[split]["all"][h][m] for m in ("kappa", "accuracy", "f1", "n")}
                for h in result[split]["all"]
            }
            for split in ("validation", "test")
        }
        save_judge(
            out_dir,
            jc,
            head,
            extra={
                "threshold_prompt_to_line": thresholds[0],
                "threshold_line_to_line": thresholds[1],
                "variant": v.name,
                "ensemble_of": c.ensemble,
                "trained_on": v.train_on,
                "train_personas": result["train_personas"],
                "excluded_sources": [] if v.with_doubtful else list(DOUBTFUL_SOURCES),
                "metrics": headline,
            },
        )
    return result


def write_metrics(results: dict[str, Any], key: str, out_dir: str | Path) -> Path:
    """`metrics.json` beside a shipped judge: its validation/test numbers, training set and
    feature settings (the per-seed epoch logs stay in the run's results.json)."""
    r = {k: v for k, v in results[key].items() if k != "seed_runs"}
    path = Path(out_dir) / "metrics.json"
    payload = {"judge": r, "features": results["features"], "base_rates": results["base_rates"]}
    path.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    return path


def _load_bench(c: ConfigDict) -> Bench:
    records = judge_records(
        _data_dir(c), max_history_lines=c.features.max_history_lines, exclude_sources=()
    )
    manifest, cached = load_cache(c.features.cache_dir)
    if manifest["max_history_lines"] != c.features.max_history_lines:
        raise ValueError("feature cache was built with another max_history_lines")
    kept, feats = features_for(records, cached)
    print(f"{len(kept)}/{len(records)} records have cached features", flush=True)
    return Bench(kept, feats, manifest)


def _save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=float) + "\n")


def run_train(c: ConfigDict) -> dict[str, Any]:
    """The whole protocol; results (every number measured) go to `<workdir>/results.json`."""
    bench = _load_bench(c)
    out = Path(c.workdir) / "results.json"
    m = bench.manifest
    results: dict[str, Any] = {
        "features": {
            k: m[k] for k in ("base_model", "depths", "pools", "max_len", "max_history_lines")
        }
        | {
            "records": len(bench.records),
            "extract_seconds": m["seconds"],
            "padded_tokens": m["padded"],
        },
        "base_rates": base_rates(r for r in bench.records if r.source not in DOUBTFUL_SOURCES),
        "base_rates_doubtful": base_rates(r for r in bench.records if r.source in DOUBTFUL_SOURCES),
        "sweep": [],
    }
    scored: dict[Variant, float] = {}

    def run(v: Variant) -> None:
        if v in scored or (v.with_doubtful and not bench.doubtful.any()):
            return
        results["sweep"].append(sweep(c, bench, v))
        scored[v] = results["sweep"][-1]["val_kappa_p2l"]["ensemble"]
        _save(out, results)

    doubtful = not c.data.exclude_doubtful  # train on the two doubtful therapy files?

    def fits(v: Variant) -> bool:
        """The merged ensemble's float32 head fits the shipping limit."""
        width = len(v.pools) * m["hidden_size"]
        n = c.ensemble * v.hidden
        # w1, b1, w2, b2, and four per-feature vectors (norm scale/bias, z-score stats)
        size = 4 * (width * n + n + len(HEADS) * (n + 1) + 4 * width)
        return size <= c.export.max_megabytes * 2**20

    def best() -> Variant:
        ok = [
            v
            for v in scored
            if v.deployable and fits(v) and v.train_on == "all" and v.with_doubtful == doubtful
        ]
        return max(ok, key=lambda v: scored[v])

    # Selection uses the validation kappa of the merged ensemble, the judge that ships.
    # 1. depth x feature standardisation (deployable pooling, default head).
    for k in m["depths"]:
        for z in (False, True):
            h = c.head
            run(
                Variant(
                    (k,),
                    hidden=h.hidden,
                    standardize=z,
                    learning_rate=h.learning_rate,
                    dropout=h.dropout,
                    with_doubtful=doubtful,
                )
            )
    top = best()
    # 2. pooled views at that depth: the persona's mean and the line's max as well.
    for pools in (
        ("line_mean", "last", "line_max"),
        ("line_mean", "last", "persona_mean"),
        POOLS,
    ):
        run(dataclasses.replace(top, pools=pools))
    top = best()
    # 3. head width x learning rate x dropout at that depth and pooling.
    for h in (c.head.hidden // 2, c.head.hidden, c.head.hidden * 2):
        for lr in (3e-4, 1e-3):
            for do in (0.1, 0.3):
                run(dataclasses.replace(top, hidden=h, learning_rate=lr, dropout=do))
    top = best()
    k = top.depths[0]
    # 4. what else could help (validation only; two depths need a change on device), and
    #    what the training data choice costs: doubtful files in, half of the personas.
    deeper = max(m["depths"]) if k != max(m["depths"]) else m["depths"][-2]
    for v in (
        dataclasses.replace(top, depths=tuple(sorted({k, deeper}))),
        dataclasses.replace(top, with_doubtful=not doubtful),
        dataclasses.replace(top, train_on="half_a"),
        dataclasses.replace(top, train_on="half_b"),
    ):
        run(v)
    # 5. the shipped judges (deployable, chosen on validation), then test once.
    results["chosen"] = {**dataclasses.asdict(top), "reward_data": c.export.reward_data}
    reward = dataclasses.replace(top, train_on=c.export.reward_data)
    results["shipped"] = final(c, bench, reward, c.export.shipped, "reward")
    _save(out, results)
    evalv = dataclasses.replace(top, train_on="half_b")
    results["shipped_eval"] = final(c, bench, evalv, c.export.shipped_eval, "eval")
    _save(out, results)
    if c.export.reward_data != "all":  # what every training persona would give, for the record
        results["all_personas"] = final(c, bench, top, None, "all_personas")
        _save(out, results)
    if bench.doubtful.any():  # the other choice about the doubtful files, for the record
        other = "without_doubtful" if doubtful else "with_doubtful"
        dv = dataclasses.replace(reward, with_doubtful=not doubtful)
        results[other] = final(c, bench, dv, None, other)
        _save(out, results)
    write_metrics(results, "shipped", c.export.shipped)
    write_metrics(results, "shipped_eval", c.export.shipped_eval)
    (out.parent / "tables.md").write_text(render(results) + "\n")
    print(f"results: {out} (tables: {out.parent / 'tables.md'})", flush=True)
    return results
