"""Fine-tune the distilled judge end to end: low-rank adapters on its backbone and its head.

Same protocol as the head-only distillation (`train_head`): class-balanced masked BCE per
head, early stopping on validation prompt-to-line Cohen's kappa with the best epoch kept in an
orbax checkpoint, thresholds chosen on validation, test scored by the caller once. What
differs is that gradients reach the backbone through adapters (`judges.lora`), so every step
runs the truncated base forward and backward: minutes on a GPU, hours on a CPU.

The head reads z-scored pooled features; the z-score statistics are those of the *frozen*
backbone's training features (the adapters start at zero, so the head starts on the same
scale as a head-only judge) and stay fixed while training, so the exported head is the plain
`distilled.head_logits` with `feat_mean` / `feat_inv_std`.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from persona_jax.checkpoint import Checkpointer
from persona_jax.judges.distilled import HEADS, JudgeConfig, head_logits, init_head, pool
from persona_jax.judges.lora import init_lora, merge_lora
from persona_jax.judges.pack import Pack
from persona_jax.judges.train_head import masked_bce, pos_weights, val_kappa
from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params, hidden_states


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of one adapter + head run."""

    rank: int = 16
    alpha: float = 32.0
    lr_lora: float = 2e-4
    lr_head: float = 1e-3
    weight_decay: float = 0.01
    dropout: float = 0.1  # on the z-scored features
    batch_size: int = 32
    epochs: int = 6
    patience: int = 2
    warmup_steps: int = 50
    hidden: int = 256
    l2l_weight: float = 1.0
    bucket: int = 96  # padded lengths are multiples of this (few shapes, few compilations)
    remat: bool = False
    max_seconds: float = 0.0  # stop after the epoch that passes this (0: no limit)

    @property
    def name(self) -> str:
        return (
            f"lora_r{self.rank}_a{self.alpha:g}_lr{self.lr_lora:g}_h{self.hidden}"
            f"_hlr{self.lr_head:g}_do{self.dropout:g}"
        )


def _pooled(bcfg, backbone, ids, mask, line_mask, persona_mask, pools, remat=False):
    h, _ = hidden_states(bcfg, backbone, ids, token_mask=mask, remat=remat)
    return pool(h, mask, line_mask, persona_mask, pools).reshape(ids.shape[0], -1)


@partial(jax.jit, static_argnames=("bcfg", "pools"))
def frozen_features(bcfg, backbone, ids, mask, line_mask, persona_mask, *, pools):
    return _pooled(bcfg, backbone, ids, mask, line_mask, persona_mask, pools)


@partial(jax.jit, static_argnames=("bcfg", "pools"))
def adapted_logits(bcfg, backbone, trainable, stats, scale, batch, *, pools):
    """[B, 2] logits of the judge with adapters (merged on the fly) and the full head."""
    merged = merge_lora(backbone, trainable["lora"], scale)
    feats = _pooled(bcfg, merged, *batch, pools)
    return head_logits({**trainable["head"], **stats}, feats)


_ADAM = optax.scale_by_adam()


@partial(
    jax.jit, static_argnames=("bcfg", "pools", "remat"), donate_argnames=("trainable", "opt_state")
)
def train_step(
    bcfg: LlamaConfig,
    backbone: Params,
    trainable: dict,
    opt_state: Any,
    stats: dict,
    batch: tuple[jax.Array, ...],
    y: jax.Array,
    hyper: dict[str, jax.Array],
    rng: jax.Array,
    *,
    pools: tuple[str, ...],
    remat: bool = False,
):
    """One AdamW step (decoupled weight decay) on adapters and head.

    Learning rates, scale and dropout are traced inputs (`hyper`), so every run of a sweep
    that shares shapes reuses one compilation.
    """

    def loss_fn(tr):
        merged = merge_lora(backbone, tr["lora"], hyper["scale"])
        feats = _pooled(bcfg, merged, *batch, pools, remat)
        z = (feats - stats["feat_mean"]) * stats["feat_inv_std"]
        keep = jax.random.bernoulli(rng, 1.0 - hyper["dropout"], z.shape)
        z = jnp.where(keep, z / (1.0 - hyper["dropout"]), 0.0)
        return masked_bce(head_logits(tr["head"], z), y, hyper["pos_weight"], hyper["head_w"])

    loss, grads = jax.value_and_grad(loss_fn)(trainable)
    updates, opt_state = _ADAM.update(grads, opt_state)
    lr = {"lora": hyper["lr_lora"], "head": hyper["lr_head"]}
    new = {
        part: jax.tree.map(
            lambda p, u, lr=lr[part]: p - lr * hyper["warm"] * (u + hyper["wd"] * p),
            trainable[part],
            updates[part],
        )
        for part in trainable
    }
    return new, opt_state, loss


def _padded(n: int, bucket: int, max_len: int) -> int:
    return min(-(-n // bucket) * bucket, max_len) if bucket else max_len


def eval_batches(
    pack: Pack, rows: np.ndarray, batch_size: int, bucket: int
) -> Iterator[tuple[np.ndarray, tuple[np.ndarray, ...]]]:
    """(rows, arrays) in length order, fixed batch size, padded to buckets."""
    lengths = pack.lengths()
    order = rows[np.argsort(lengths[rows], kind="stable")]
    max_len, pad = int(pack.meta["max_len"]), int(pack.meta["pad_id"])
    for s in range(0, len(order), batch_size):
        chunk = order[s : s + batch_size]
        length = _padded(int(lengths[chunk].max()), bucket, max_len)
        yield chunk, pack.arrays(chunk, length, pad, batch_size)


def train_batches(
    pack: Pack, rows: np.ndarray, batch_size: int, bucket: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch of full batches: shuffled, then sorted by length within windows of 32
    batches (little padding), batch order shuffled again."""
    lengths = pack.lengths()
    perm = rng.permutation(rows)
    window = 32 * batch_size
    out = []
    for s in range(0, len(perm), window):
        w = perm[s : s + window]
        w = w[np.argsort(lengths[w], kind="stable")]
        out += [w[i : i + batch_size] for i in range(0, len(w) - batch_size + 1, batch_size)]
    rng.shuffle(out)
    return out


def probs_of(
    bcfg: LlamaConfig,
    backbone: Params,
    trainable: dict,
    stats: dict,
    scale: float,
    pack: Pack,
    rows: np.ndarray,
    pools: tuple[str, ...],
    batch_size: int = 32,
    bucket: int = 96,
) -> np.ndarray:
    """[len(rows), 2] P(inconsistent), in the order of `rows`."""
    out = np.zeros((len(rows), len(HEADS)), np.float32)
    where = {int(r): i for i, r in enumerate(rows)}
    s = jnp.float32(scale)
    for chunk, arrays in eval_batches(pack, rows, batch_size, bucket):
        z = adapted_logits(bcfg, backbone, trainable, stats, s, arrays, pools=pools)
        p = np.asarray(jax.nn.sigmoid(z))[: len(chunk)]
        out[[where[int(r)] for r in chunk]] = p
    return out


def feature_stats(
    bcfg,
    backbone,
    pack: Pack,
    rows: np.ndarray,
    pools,
    batch_size: int,
    bucket: int,
    progress: bool = False,
) -> dict[str, jax.Array]:
    """z-score statistics of the frozen backbone's pooled features over `rows` (one forward
    of every training line: minutes on a CPU, hence the optional progress bar)."""
    feats = []
    batches = eval_batches(pack, rows, batch_size, bucket)
    total = -(-len(rows) // batch_size)
    bar = tqdm(batches, total=total, desc="feature statistics", leave=False, disable=not progress)
    for chunk, arrays in bar:
        f = frozen_features(bcfg, backbone, *arrays, pools=pools)
        feats.append(np.asarray(f, np.float64)[: len(chunk)])
    x = np.concatenate(feats)
    return {
        "feat_mean": jnp.asarray(x.mean(axis=0), jnp.float32),
        "feat_inv_std": jnp.asarray(1.0 / (x.std(axis=0) + 1e-3), jnp.float32),
    }


def finetune(
    ft: FinetuneConfig,
    jc: JudgeConfig,
    bcfg: LlamaConfig,
    backbone: Params,
    pack: Pack,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    *,
    seed: int = 0,
    ckpt_dir: str | Path | None = None,
    desc: str = "finetune",
    progress: bool = True,
    log_fn=print,
) -> tuple[dict, dict, dict[str, Any]]:
    """Train adapters + head; early stopping on validation p2l kappa.

    Returns (trainable {"lora", "head"} of the best epoch, feature stats, log). With
    `ckpt_dir` the best epoch is saved by `Checkpointer` and restored from it at the end.
    """
    if len(train_rows) < ft.batch_size:
        raise ValueError(f"{len(train_rows)} training rows < batch size {ft.batch_size}")
    pools = tuple(jc.pools)
    t0 = time.perf_counter()
    stats = feature_stats(
        bcfg, backbone, pack, train_rows, pools, ft.batch_size, ft.bucket, progress
    )
    t_stats = time.perf_counter() - t0
    rng = jax.random.key(seed)
    rng, k_lora, k_head = jax.random.split(rng, 3)
    head = init_head(dataclasses.replace(jc, hidden=ft.hidden), k_head)
    trainable = {"lora": init_lora(backbone["layers"], ft.rank, k_lora), "head": head}
    opt_state = _ADAM.init(trainable)
    y_train = pack.y.astype(np.int32)
    hyper = {
        "scale": jnp.float32(ft.alpha / ft.rank),
        "dropout": jnp.float32(ft.dropout),
        "lr_lora": jnp.float32(ft.lr_lora),
        "lr_head": jnp.float32(ft.lr_head),
        "wd": jnp.float32(ft.weight_decay),
        "pos_weight": jnp.asarray(pos_weights(y_train[train_rows])),
        "head_w": jnp.asarray([1.0, ft.l2l_weight], jnp.float32),
    }
    ckpt = None
    if ckpt_dir is not None:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        ckpt = Checkpointer(ckpt_dir, max_to_keep=1, async_save=False)
    order_rng = np.random.default_rng(seed)
    max_len, pad = int(pack.meta["max_len"]), int(pack.meta["pad_id"])
    lengths = pack.lengths()
    best: dict[str, Any] = {"kappa": -math.inf, "epoch": -1, "trainable": None}
    log: list[dict[str, float]] = []
    step_count = 0
    for epoch in range(ft.epochs):
        te = time.perf_counter()
        batches = train_batches(pack, train_rows, ft.batch_size, ft.bucket, order_rng)
        losses = []
        bar = tqdm(batches, desc=f"{desc} epoch {epoch}", leave=False, disable=not progress)
        for rows in bar:
            length = _padded(int(lengths[rows].max()), ft.bucket, max_len)
            arrays = tuple(jnp.asarray(a) for a in pack.arrays(rows, length, pad))
            warm = min(1.0, (step_count + 1) / max(ft.warmup_steps, 1))
            rng, sub = jax.random.split(rng)
            trainable, opt_state, loss = train_step(
                bcfg,
                backbone,
                trainable,
                opt_state,
                stats,
                arrays,
                jnp.asarray(y_train[rows]),
                {**hyper, "warm": jnp.float32(warm)},
                sub,
                pools=pools,
                remat=ft.remat,
            )
            step_count += 1
            losses.append(loss)
            if len(losses) % 20 == 0:
                bar.set_postfix(loss=f"{float(jnp.mean(jnp.stack(losses[-20:]))):.3f}")
        train_loss = float(jnp.mean(jnp.stack(losses)))
        t_train = time.perf_counter() - te
        p = probs_of(bcfg, backbone, trainable, stats, ft.alpha / ft.rank, pack, val_rows, pools)
        y_val = y_train[val_rows]
        k_p2l, _ = val_kappa(y_val, p, 0)
        k_l2l, _ = val_kappa(y_val, p, 1)
        entry = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_kappa_p2l": k_p2l,
            "val_kappa_l2l": k_l2l,
            "train_seconds": t_train,
            "seconds": time.perf_counter() - te,
        }
        log.append(entry)
        log_fn(
            f"{desc} epoch {epoch}: loss {train_loss:.4f} val kappa p2l {k_p2l:.3f} "
            f"l2l {k_l2l:.3f} ({t_train:.1f}s train, {len(batches)} steps)"
        )
        if k_p2l > best["kappa"]:
            host = jax.tree.map(np.array, trainable)  # a copy: the next step donates
            best = {"kappa": k_p2l, "epoch": epoch, "trainable": host}
            if ckpt is not None:
                ckpt.save(epoch, host, meta={"val_kappa_p2l": k_p2l}, force=True)
        elif epoch - best["epoch"] >= ft.patience:
            break
        if ft.max_seconds and time.perf_counter() - t0 > ft.max_seconds:
            log_fn(f"{desc}: time budget {ft.max_seconds:g}s spent after epoch {epoch}")
            break
    chosen = best["trainable"]
    if ckpt is not None:
        restored = ckpt.restore(chosen)
        ckpt.close()
        if restored is None or restored.step != best["epoch"]:
            raise RuntimeError(f"{ckpt_dir}: best epoch {best['epoch']} not restorable")
        chosen = restored.state
    chosen = jax.tree.map(jnp.asarray, chosen)
    return (
        chosen,
        stats,
        {
            "best_epoch": best["epoch"],
            "best_val_kappa_p2l": best["kappa"],
            "epochs": log,
            "stats_seconds": t_stats,
            "seconds": time.perf_counter() - t0,
        },
    )


def rows_of(pack: Pack, split: str, train_on: str = "all", exclude: Sequence[str] = ()):
    """Row indices of a split (train rows optionally limited to half A or B of the groups),
    without the excluded sources."""
    keep = (pack.split == split) & ~np.isin(pack.source, list(exclude))
    if split == "train" and train_on != "all":
        if train_on not in ("half_a", "half_b"):
            raise ValueError(f"train_on={train_on!r}; use all, half_a or half_b")
        keep &= pack.half == train_on[-1].upper()
    return np.flatnonzero(keep)
