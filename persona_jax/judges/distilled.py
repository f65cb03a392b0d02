"""The distilled judge: a small head over the policy base's lower layers (frozen or adapted).

Why this shape: the judge must score lines *inside* the jitted RL step from the policy's token
ids, so it reuses the policy tokenizer and builds on the frozen base checkpoint that is already
on device as the reference model. Its first `num_layers` decoder layers (a truncated copy of the
base) read the judge template (persona, recent history, line); an MLP head reads pooled
views of the last hidden layer (`POOLS`: the mean over the judged line's tokens, the final
token, the mean over the persona's tokens, the max over the line's tokens; a judge stores
which it reads) and outputs two logits: P(line contradicts the persona) and P(line conflicts
with the speaker's earlier lines). A judge ships only what is not the base: the head (a few
MB) and, for the adapter judges, low-rank adapters that are merged into the truncated base at
load time (`judge_backbone`), so scoring costs the same either way. A head-only judge trains
on backbone features computed once and cached, which is what makes that kind feasible on a CPU.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file, save_file

from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params, hidden_states

HEADS = ("prompt_to_line", "line_to_line")
POOLS = ("line_mean", "last", "persona_mean", "line_max")
DEFAULT_POOLS = ("line_mean", "last")


@dataclasses.dataclass(frozen=True)
class JudgeConfig:
    """Static description of a distilled judge (saved as judge_config.json)."""

    num_layers: int = 8
    hidden: int = 256
    max_len: int = 512
    max_history_lines: int = 4
    base_model: str = "SmolLM2-135M-Instruct"
    base_vocab_size: int = 49152
    base_hidden_size: int = 576
    pools: tuple[str, ...] = DEFAULT_POOLS
    # Low-rank adapters of the backbone layers (`judges.lora`); rank 0 = frozen backbone.
    lora_rank: int = 0
    lora_alpha: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "pools", tuple(self.pools))  # JSON gives a list
        unknown = [p for p in self.pools if p not in POOLS]
        if unknown or not self.pools:
            raise ValueError(f"judge pools {self.pools!r}: each must be one of {POOLS}")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0, got {self.lora_rank}")

    @property
    def lora_scale(self) -> float:
        return self.lora_alpha / self.lora_rank if self.lora_rank else 0.0

    @property
    def feature_size(self) -> int:
        return len(self.pools) * self.base_hidden_size


def truncate_backbone(config: LlamaConfig, params: Params, num_layers: int):
    """The first `num_layers` decoder layers of a base model (config and params)."""
    if not 1 <= num_layers <= config.num_layers:
        raise ValueError(f"judge needs 1..{config.num_layers} base layers, got {num_layers}")
    cfg = config.replace(num_layers=num_layers)
    sub = {k: v for k, v in params.items() if k != "lm_head"}
    sub["layers"] = jax.tree.map(lambda x: x[:num_layers], params["layers"])
    return cfg, sub


def judge_backbone(
    cfg: JudgeConfig, judge_dir: str | Path | None, base_cfg: LlamaConfig, base_params: Params
):
    """The judge's backbone (config, params): the base's first `cfg.num_layers` layers, with
    the judge's low-rank adapters merged in when it has them (read from `judge_dir`)."""
    from persona_jax.judges.lora import LORA_FILE, load_lora, merge_lora

    bcfg, backbone = truncate_backbone(base_cfg, base_params, cfg.num_layers)
    if not cfg.lora_rank:
        return bcfg, backbone
    if judge_dir is None:
        raise FileNotFoundError(f"a judge with lora_rank={cfg.lora_rank} reads its {LORA_FILE}")
    path = Path(judge_dir) / LORA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"distilled judge file missing: {path} (lora_rank={cfg.lora_rank})")
    lora = load_lora(path)
    ranks = {ab["a"].shape[-1] for ab in lora.values()}
    if ranks != {cfg.lora_rank}:
        raise ValueError(f"{path}: adapter ranks {sorted(ranks)} != lora_rank {cfg.lora_rank}")
    return bcfg, merge_lora(backbone, lora, cfg.lora_scale)


def pool(
    h: jax.Array,
    mask: jax.Array,
    line_mask: jax.Array,
    persona_mask: jax.Array | None,
    pools: tuple[str, ...] = POOLS,
) -> jax.Array:
    """[B, len(pools), D] pooled views of hidden states h [B, T, D], in float32.

    The persona mean lets the head compare the line with the persona directly instead of
    through the last token alone; the line max keeps a single contradicting phrase from being
    averaged away in a long line.
    """
    h = h.astype(jnp.float32)

    def mean_over(m: jax.Array) -> jax.Array:
        m = m.astype(jnp.float32)[..., None]
        return jnp.sum(h * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)

    def view(name: str) -> jax.Array:
        if name == "line_mean":
            return mean_over(line_mask)
        if name == "last":
            last_idx = h.shape[1] - 1 - jnp.argmax(mask[:, ::-1], axis=1)
            return jnp.take_along_axis(h, last_idx[:, None, None], axis=1)[:, 0]
        if name == "persona_mean":
            if persona_mask is None:
                raise ValueError("the persona_mean pool needs a persona_mask")
            return mean_over(persona_mask)
        if name == "line_max":
            lm = line_mask.astype(bool)
            m = jnp.max(jnp.where(lm[..., None], h, -jnp.inf), axis=1)
            return jnp.where(jnp.any(lm, axis=1)[:, None], m, 0.0)
        raise ValueError(f"unknown pool {name!r}; choose from {POOLS}")

    return jnp.stack([view(p) for p in pools], axis=1)


def features(
    backbone_cfg: LlamaConfig,
    backbone: Params,
    ids: jax.Array,
    mask: jax.Array,
    line_mask: jax.Array,
    persona_mask: jax.Array | None = None,
    pools: tuple[str, ...] = DEFAULT_POOLS,
) -> jax.Array:
    """Pooled judge features [B, len(pools) * D] of the last backbone layer."""
    h, _ = hidden_states(backbone_cfg, backbone, ids, token_mask=mask)
    b = ids.shape[0]
    return pool(h, mask, line_mask, persona_mask, pools).reshape(b, -1)


def init_head(
    cfg: JudgeConfig, rng: jax.Array, feature_size: int | None = None
) -> dict[str, jax.Array]:
    """A fresh head; `feature_size` overrides `cfg.feature_size` (heads over features that
    span several depths, tried in training sweeps, which `features` does not compute)."""
    k1, k2 = jax.random.split(rng)
    f = cfg.feature_size if feature_size is None else feature_size
    return {
        "norm_scale": jnp.ones((f,), jnp.float32),
        "norm_bias": jnp.zeros((f,), jnp.float32),
        "w1": jax.random.normal(k1, (f, cfg.hidden), jnp.float32) * (1.0 / np.sqrt(f)),
        "b1": jnp.zeros((cfg.hidden,), jnp.float32),
        "w2": jax.random.normal(k2, (cfg.hidden, len(HEADS)), jnp.float32) * 0.01,
        "b2": jnp.zeros((len(HEADS),), jnp.float32),
    }


def head_logits(head: dict[str, jax.Array], feats: jax.Array) -> jax.Array:
    """[B, 2] logits of P(inconsistent) for prompt-to-line and line-to-line.

    A head may carry `feat_mean`/`feat_inv_std` (fitted on its training features): a few
    hidden dimensions of the base carry offsets ~100x the median magnitude, and z-scoring
    every dimension first keeps them from dominating the row normalisation.
    """
    if "feat_mean" in head:
        feats = (feats - head["feat_mean"]) * head["feat_inv_std"]
    mu = jnp.mean(feats, axis=-1, keepdims=True)
    var = jnp.var(feats, axis=-1, keepdims=True)
    x = (feats - mu) * jax.lax.rsqrt(var + 1e-6) * head["norm_scale"] + head["norm_bias"]
    x = jax.nn.gelu(x @ head["w1"] + head["b1"])
    return x @ head["w2"] + head["b2"]


def judge_probs(
    backbone_cfg: LlamaConfig,
    backbone: Params,
    head: dict[str, jax.Array],
    ids: jax.Array,
    mask: jax.Array,
    line_mask: jax.Array,
    persona_mask: jax.Array | None = None,
    *,
    pools: tuple[str, ...] = DEFAULT_POOLS,
) -> jax.Array:
    """[B, 2] P(inconsistent): a pure function of (params, ids, masks), jittable end to end.

    `pools` is the judge's `JudgeConfig.pools` (static under jit); a judge that reads the
    persona mean needs `persona_mask`.
    """
    feats = features(backbone_cfg, backbone, ids, mask, line_mask, persona_mask, pools)
    return jax.nn.sigmoid(head_logits(head, feats))


def save_judge(
    out_dir: str | Path,
    cfg: JudgeConfig,
    head: dict,
    extra: dict | None = None,
    lora: dict | None = None,
):
    """Write judge_config.json + head.safetensors (+ lora.safetensors for a judge with
    adapters) atomically into `out_dir`."""
    from persona_jax.judges.lora import LORA_FILE, save_lora

    if bool(cfg.lora_rank) != bool(lora):
        raise ValueError(f"lora_rank={cfg.lora_rank} but adapters given: {bool(lora)}")
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: np.asarray(v) for k, v in head.items()}, str(tmp / "head.safetensors"))
    if lora:
        save_lora(tmp / LORA_FILE, lora)
    (tmp / "judge_config.json").write_text(
        json.dumps({**dataclasses.asdict(cfg), **(extra or {})}, indent=2) + "\n"
    )
    if out.exists():
        import shutil

        # Keep what sits beside the judge (its model card); replace the judge itself.
        for f in out.iterdir():
            stale = f.name in ("metrics.json", LORA_FILE)
            if f.is_file() and not (tmp / f.name).exists() and not stale:
                shutil.copy2(f, tmp / f.name)
        shutil.rmtree(out)
    tmp.rename(out)


def load_judge(judge_dir: str | Path) -> tuple[JudgeConfig, dict[str, Any]]:
    """Read a saved judge; clear errors for a missing directory or files."""
    d = Path(judge_dir)
    cfg_path, head_path = d / "judge_config.json", d / "head.safetensors"
    for p in (cfg_path, head_path):
        if not p.is_file():
            raise FileNotFoundError(f"distilled judge file missing: {p}")
    raw = json.loads(cfg_path.read_text())
    fields = {f.name for f in dataclasses.fields(JudgeConfig)}
    cfg = JudgeConfig(**{k: v for k, v in raw.items() if k in fields})
    head = {k: jnp.asarray(v) for k, v in load_file(str(head_path)).items()}
    return cfg, head


def check_base(cfg: JudgeConfig, base: LlamaConfig, where: str) -> None:
    """Refuse a base model the judge was not trained on (different vocab or width)."""
    if (base.vocab_size, base.hidden_size) != (cfg.base_vocab_size, cfg.base_hidden_size):
        raise ValueError(
            f"{where}: judge was trained on {cfg.base_model} (vocab {cfg.base_vocab_size}, "
            f"hidden {cfg.base_hidden_size}) but the base model has vocab {base.vocab_size}, "
            f"hidden {base.hidden_size}"
        )
