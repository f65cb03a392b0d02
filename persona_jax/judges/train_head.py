"""Judge distillation: feature extraction, head training, selection on validation, test report.

Protocol (no number is reported on data it was tuned on):
  1. the frozen base's pooled features of every judged line are cached once (`features.py`);
  2. heads are trained on the train split (AdamW, class-balanced masked BCE per head, input
     dropout) and early-stopped on validation prompt-to-line Cohen's kappa; the best epoch is
     kept in an orbax checkpoint and restored;
  3. depth and decision thresholds are chosen on validation only;
  4. the chosen judges are scored on test once and written with `save_judge`.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from persona_jax.checkpoint import Checkpointer
from persona_jax.judges.distilled import HEADS, JudgeConfig, head_logits, init_head
from persona_jax.metrics.agreement import best_threshold, bootstrap_ci, summary

if TYPE_CHECKING:  # the records' reader needs TFDS; training on features does not
    from persona_jax.judges.data import JudgeRecord

TASKS = ("chatting", "education", "therapy")
Head = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """Hyper-parameters of one head-training run."""

    hidden: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    dropout: float = 0.1
    batch_size: int = 128
    epochs: int = 60
    patience: int = 10
    l2l_weight: float = 1.0
    standardize: bool = False  # per-feature z-scores from the training set, kept in the head


@dataclasses.dataclass
class LabelledFeatures:
    """Features [N, F] with labels [N, 2] (-1 = unknown), each row's task and persona id."""

    x: np.ndarray
    y: np.ndarray
    task: np.ndarray
    persona: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def of(cls, records: Sequence[JudgeRecord], x: np.ndarray) -> LabelledFeatures:
        lab = lambda v: -1 if v is None else int(v)
        y = np.asarray([[lab(r.label_p2l), lab(r.label_l2l)] for r in records], np.int32)
        return cls(
            np.asarray(x, np.float32),
            y.reshape(-1, 2),
            np.asarray([r.task for r in records]),
            np.asarray([r.persona_id for r in records]),
        )


# ---------------------------------------------------------------------------- training


def pos_weights(y: np.ndarray) -> np.ndarray:
    """Per head n_neg / n_pos on the known labels: both classes weigh the same in the loss."""
    out = []
    for h in range(y.shape[1]):
        n1, n0 = np.sum(y[:, h] == 1), np.sum(y[:, h] == 0)
        out.append(n0 / n1 if n1 and n0 else 1.0)
    return np.asarray(out, np.float32)


def masked_bce(logits: jax.Array, y: jax.Array, pos_weight: jax.Array, head_w: jax.Array):
    """Class-weighted BCE per head over known labels (y >= 0), summed over heads with head_w."""
    known = (y >= 0).astype(jnp.float32)
    yf = jnp.clip(y, 0, 1).astype(jnp.float32)
    per = optax.sigmoid_binary_cross_entropy(logits, yf)
    w = known * jnp.where(yf > 0, pos_weight, 1.0)
    per_head = jnp.sum(per * w, axis=0) / jnp.maximum(jnp.sum(w, axis=0), 1e-6)
    return jnp.sum(per_head * head_w)


def make_step(opt: optax.GradientTransformation, dropout: float):
    """A jitted AdamW step on one minibatch, with dropout on the input features."""

    def loss_fn(head, x, y, pw, hw, rng):
        if dropout > 0:
            keep = jax.random.bernoulli(rng, 1.0 - dropout, x.shape)
            x = jnp.where(keep, x / (1.0 - dropout), 0.0)
        return masked_bce(head_logits(head, x), y, pw, hw)

    @jax.jit
    def step(head, opt_state, x, y, pw, hw, rng):
        loss, grads = jax.value_and_grad(loss_fn)(head, x, y, pw, hw, rng)
        updates, opt_state = opt.update(grads, opt_state, head)
        return optax.apply_updates(head, updates), opt_state, loss

    return step


_logits = jax.jit(head_logits)


def logits_of(head: Head, x: np.ndarray, batch: int = 4096) -> np.ndarray:
    """[N, 2] logits of P(inconsistent) per head."""
    out = [np.asarray(_logits(head, x[i : i + batch])) for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros((0, 2), np.float32)


def predict(head: Head, x: np.ndarray) -> np.ndarray:
    """[N, 2] P(inconsistent) per head."""
    return 1.0 / (1.0 + np.exp(-logits_of(head, x)))


def merge_heads(heads: Sequence[Head]) -> Head:
    """One head whose logits are the mean of `heads`' logits: a seed ensemble that ships and
    runs on device as a single, wider head.

    Exact: each head's normalisation affine is folded into its first layer, the hidden units
    are concatenated and the output layer is averaged. Heads must share feature statistics.
    """
    if not heads:
        raise ValueError("merge_heads needs at least one head")
    n = len(heads)
    for k in ("feat_mean", "feat_inv_std"):
        if k in heads[0] and not all(np.array_equal(h[k], heads[0][k]) for h in heads):
            raise ValueError(f"heads were trained on different feature statistics ({k})")
    f = heads[0]["w1"].shape[0]
    merged: Head = {
        "norm_scale": jnp.ones((f,), jnp.float32),
        "norm_bias": jnp.zeros((f,), jnp.float32),
        "w1": jnp.concatenate([h["norm_scale"][:, None] * h["w1"] for h in heads], axis=1),
        "b1": jnp.concatenate([h["b1"] + h["norm_bias"] @ h["w1"] for h in heads]),
        "w2": jnp.concatenate([h["w2"] for h in heads], axis=0) / n,
        "b2": sum(h["b2"] for h in heads) / n,
    }
    for k in ("feat_mean", "feat_inv_std"):
        if k in heads[0]:
            merged[k] = heads[0][k]
    return merged


def val_kappa(y: np.ndarray, p: np.ndarray, h: int) -> tuple[float, float]:
    """(best-threshold kappa, threshold) of head h on known labels."""
    known = y[:, h] >= 0
    th, k = best_threshold(y[known, h], p[known, h])
    return k, th


def train_head(
    hc: HeadConfig,
    jc: JudgeConfig,
    train: LabelledFeatures,
    val: LabelledFeatures,
    *,
    seed: int,
    ckpt_dir: str | Path | None = None,
    desc: str = "head",
    progress: bool = True,
) -> tuple[Head, dict[str, Any]]:
    """Train one head; early stopping on validation p2l kappa; returns the best head and a log.

    With `ckpt_dir` the best epoch's head is saved there by `Checkpointer` whenever validation
    improves and restored from it at the end (what a resumed or inspected run would read).
    """
    stats = None
    if hc.standardize:
        mean = train.x.mean(axis=0)
        inv_std = 1.0 / (train.x.std(axis=0) + 1e-3)
        stats = {"feat_mean": jnp.asarray(mean), "feat_inv_std": jnp.asarray(inv_std)}
        train = dataclasses.replace(train, x=(train.x - mean) * inv_std)
        val = dataclasses.replace(val, x=(val.x - mean) * inv_std)
    rng = jax.random.key(seed)
    rng, init_rng = jax.random.split(rng)
    head = init_head(jc, init_rng, feature_size=train.x.shape[1])
    opt = optax.adamw(hc.learning_rate, weight_decay=hc.weight_decay)
    opt_state = opt.init(head)
    step = make_step(opt, hc.dropout)
    pw = jnp.asarray(pos_weights(train.y))
    hw = jnp.asarray([1.0, hc.l2l_weight], jnp.float32)
    ckpt = None
    if ckpt_dir is not None:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        ckpt = Checkpointer(ckpt_dir, max_to_keep=1, async_save=False)
    order_rng = np.random.default_rng(seed)
    n = len(train)
    best = {"kappa": -math.inf, "epoch": -1, "head": head}
    log: list[dict[str, float]] = []
    bar = tqdm(range(hc.epochs), desc=desc, leave=False, disable=not progress)
    for epoch in bar:
        perm = order_rng.permutation(n)
        losses = []
        for s in range(0, n - hc.batch_size + 1, hc.batch_size):
            idx = perm[s : s + hc.batch_size]
            rng, sub = jax.random.split(rng)
            head, opt_state, loss = step(head, opt_state, train.x[idx], train.y[idx], pw, hw, sub)
            losses.append(float(loss))
        z = logits_of(head, val.x)
        p = 1.0 / (1.0 + np.exp(-z))
        k_p2l, _ = val_kappa(val.y, p, 0)
        k_l2l, _ = val_kappa(val.y, p, 1)
        val_loss = float(masked_bce(jnp.asarray(z), jnp.asarray(val.y), pw, hw))
        log.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "val_loss": val_loss,
                "val_kappa_p2l": k_p2l,
                "val_kappa_l2l": k_l2l,
            }
        )
        bar.set_postfix(loss=f"{np.mean(losses):.3f}", k_p2l=f"{k_p2l:.3f}", k_l2l=f"{k_l2l:.3f}")
        if k_p2l > best["kappa"]:
            best = {"kappa": k_p2l, "epoch": epoch, "head": head}
            if ckpt is not None:
                ckpt.save(epoch, head, meta={"val_kappa_p2l": k_p2l}, force=True)
        elif epoch - best["epoch"] >= hc.patience:
            break
    if ckpt is not None:
        restored = ckpt.restore(head)
        ckpt.close()
        assert restored is not None and restored.step == best["epoch"]
        best["head"] = jax.tree.map(jnp.asarray, restored.state)
    if stats is not None:  # the head then reads raw features, as on device
        best["head"] = {**best["head"], **stats}
    return best["head"], {
        "best_epoch": best["epoch"],
        "best_val_kappa_p2l": best["kappa"],
        "epochs": log,
    }


# ---------------------------------------------------------------------------- evaluation


def evaluate(
    data: LabelledFeatures, probs: np.ndarray, thresholds: Sequence[float], n_boot: int = 1000
) -> dict:
    """Per task and overall: kappa/accuracy/F1/base rate of each head at fixed thresholds,
    with a 95% kappa interval from a bootstrap over personas (NaN with fewer than 3)."""
    out: dict[str, dict[str, Any]] = {}
    for task in (*TASKS, "all"):
        rows = np.ones(len(data), bool) if task == "all" else data.task == task
        for h, name in enumerate(HEADS):
            known = rows & (data.y[:, h] >= 0)
            if known.any():
                pred = (probs[known, h] >= thresholds[h]).astype(int)
                truth = data.y[known, h]
                entry = summary(truth, pred)
                personas = None if data.persona is None else data.persona[known]
                n_personas = 0 if personas is None else len(set(personas.tolist()))
                entry["personas"] = n_personas
                entry["kappa_ci95"] = (
                    bootstrap_ci(truth, pred, personas, n_boot=n_boot)
                    if n_personas >= 3
                    else (math.nan, math.nan)
                )
                out.setdefault(task, {})[name] = entry
    return out
