"""Everything a run needs, built once from the config: models, tokenizer, judges, data, mesh."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
from flax import nnx
from ml_collections import ConfigDict

from persona_jax.data.partners import PartnerSpec, load_partners
from persona_jax.data.persona_bank import ROLES, Persona, load_personas
from persona_jax.envs.chat_format import ChatFormat
from persona_jax.envs.episode import EpisodeSpec
from persona_jax.envs.inputs import InputWidths, required_widths, resolve_widths
from persona_jax.judges.distilled import (
    JudgeConfig,
    check_base,
    init_head,
    judge_backbone,
    load_judge,
)
from persona_jax.judges.template import JudgeTemplate
from persona_jax.models.llama import Llama, LlamaConfig
from persona_jax.models.llama.model import Params
from persona_jax.rewards.consistency import RewardSpec
from persona_jax.rl.state import RLConfig
from persona_jax.sampling.params import SamplingParams
from persona_jax.text.tokenizer import Tokenizer

_RL_ONLY_IN_CONFIG = ("kl_budget",)


class RunConfigError(ValueError):
    """A config value that cannot work (names the key)."""


@dataclasses.dataclass
class Judge:
    cfg: JudgeConfig
    backbone_cfg: LlamaConfig
    backbone: Params
    head: dict
    source: str
    # Decision thresholds on P(inconsistent), chosen on validation when the judge was trained.
    threshold_prompt_to_line: float = 0.5
    threshold_line_to_line: float = 0.5


@dataclasses.dataclass
class Run:
    config: ConfigDict
    tokenizer: Tokenizer
    chat: ChatFormat
    model_cfg: LlamaConfig
    base_params: Params  # frozen reference (and default partner)
    partner_cfg: LlamaConfig
    partner_params: Params
    judge: Judge
    eval_judge: Judge
    train_personas: list[Persona]
    eval_personas: list[Persona]  # the eval split from `eval.first_persona` on
    partners: dict[str, PartnerSpec]
    rl: RLConfig
    widths: InputWidths
    reward_spec: RewardSpec
    train_spec: EpisodeSpec
    eval_spec: EpisodeSpec


def rl_config(c: ConfigDict) -> RLConfig:
    fields = {f.name for f in dataclasses.fields(RLConfig)}
    values = {k: v for k, v in c.rl.to_dict().items() if k not in _RL_ONLY_IN_CONFIG}
    unknown = set(values) - fields
    if unknown:
        raise RunConfigError(f"unknown rl config keys: {sorted(unknown)}")
    try:
        return RLConfig(**values)
    except ValueError as e:
        raise RunConfigError(f"rl: {e}") from None


def _model_dir(path: str) -> Path:
    from persona_jax.assets import default_model_dir

    return Path(path) if path else default_model_dir()


def load_policy(c: ConfigDict, tokenizer: Tokenizer) -> tuple[LlamaConfig, Params]:
    """The base checkpoint (or a tiny random model with the same tokenizer, for tests)."""
    if c.model.tiny:
        cfg = LlamaConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            head_dim=8,
            tie_word_embeddings=True,
            eos_token_ids=tokenizer.eos_ids,
            dtype=c.model.dtype,
        )
        return cfg, Llama(cfg, rngs=nnx.Rngs(c.seed)).params()
    from persona_jax.weights import load_pretrained

    return load_pretrained(_model_dir(c.model.path), dtype=c.model.dtype)


def _resolve(path: str) -> str:
    """A relative path as given, or else relative to the repository (shipped judges)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return str(p)
    in_repo = Path(__file__).resolve().parents[2] / p
    return str(in_repo) if in_repo.exists() else str(p)


def load_judge_for(
    path: str, random: bool, base_cfg: LlamaConfig, base: Params, seed: int, what: str
) -> Judge:
    if random:
        jcfg = JudgeConfig(
            num_layers=min(2, base_cfg.num_layers),
            hidden=32,
            max_len=512,
            base_model="random",
            base_vocab_size=base_cfg.vocab_size,
            base_hidden_size=base_cfg.hidden_size,
        )
        head, source = init_head(jcfg, jax.random.key(seed)), "random head"
    else:
        if not path:
            raise RunConfigError(f"{what}: no judge path given")
        path = _resolve(path)
        jcfg, head = load_judge(path)
        check_base(jcfg, base_cfg, f"{what} {path}")
        source = str(path)
        raw = json.loads((Path(path) / "judge_config.json").read_text())
        thresholds = (
            float(raw.get("threshold_prompt_to_line", 0.5)),
            float(raw.get("threshold_line_to_line", 0.5)),
        )
    bcfg, backbone = judge_backbone(jcfg, None if random else path, base_cfg, base)
    if random:
        thresholds = (0.5, 0.5)
    return Judge(jcfg, bcfg, backbone, head, source, *thresholds)


def build_run(c: ConfigDict) -> Run:
    """Validate the config and load everything; errors name the offending key or file."""
    if c.data.role not in ROLES:
        raise RunConfigError(f"data.role={c.data.role!r}; use one of {ROLES}")
    rl = rl_config(c)
    tokenizer = Tokenizer.from_pretrained(_model_dir("" if c.model.tiny else c.model.path))
    chat = ChatFormat.from_tokenizer(tokenizer)
    model_cfg, base = load_policy(c, tokenizer)
    if c.partner.path:
        from persona_jax.weights import load_pretrained

        partner_cfg, partner = load_pretrained(c.partner.path, dtype=c.model.dtype)
        if partner_cfg.vocab_size != model_cfg.vocab_size:
            raise RunConfigError(
                f"partner.path={c.partner.path}: vocab {partner_cfg.vocab_size} differs from "
                f"the policy's {model_cfg.vocab_size}; turns are spliced as token ids, so the "
                "partner must share the policy tokenizer"
            )
    else:
        partner_cfg, partner = model_cfg, base
    judge = load_judge_for(c.judge.path, c.judge.random, model_cfg, base, c.seed, "judge.path")
    eval_judge = judge
    if c.judge.eval_path:
        eval_judge = load_judge_for(
            c.judge.eval_path, False, model_cfg, base, c.seed, "judge.eval_path"
        )
    train_p = load_personas(c.data.role, "train")
    eval_p = load_personas(c.data.role, "eval")
    for name, split in (("train", train_p), ("eval", eval_p)):
        if not split:
            raise RunConfigError(f"data.role={c.data.role}: the {name} persona split is empty")
    first = int(c.eval.get("first_persona", 0))
    if not 0 <= first < len(eval_p):
        raise RunConfigError(
            f"eval.first_persona={first}: the {c.data.role} bank has {len(eval_p)} held-out "
            f"personas, so it must be in 0..{len(eval_p) - 1}"
        )
    partners = load_partners()
    try:
        widths = resolve_widths(
            c.episode.widths.to_dict(),
            required_widths(train_p + eval_p, partners, tokenizer, chat),
        )
    except ValueError as e:
        raise RunConfigError(str(e)) from None
    tmpl = JudgeTemplate.for_tokenizer(tokenizer)
    # Speaking as the partner: a role label, or opening a chat turn of its own.
    labels = ("Therapist:", "Teacher:", "Partner:", "Assistant:", "User:")
    markers = (*(tuple(tokenizer.encode(m)) for m in labels), (chat.system_header[0],))
    r = c.reward
    reward_spec = RewardSpec(
        template=tmpl,
        max_history_lines=r.max_history_lines,
        w_prompt_to_line=r.w_prompt_to_line,
        w_line_to_line=r.w_line_to_line,
        w_qa=r.w_qa,
        empty_penalty=r.empty_penalty,
        run_on_penalty=r.run_on_penalty,
        partner_penalty=r.partner_penalty,
        copy_penalty=r.copy_penalty,
        copy_ngram=r.copy_ngram,
        w_persona_contrast=r.w_persona_contrast,
        partner_markers=markers,
    )
    e = c.episode
    stops = tokenizer.stop_ids
    pol = SamplingParams(
        temperature=e.temperature,
        top_k=e.top_k,
        top_p=e.top_p,
        max_new_tokens=e.max_new_tokens,
        stop_ids=stops,
    )
    par = SamplingParams(
        temperature=e.partner_temperature, max_new_tokens=e.partner_max_new_tokens, stop_ids=stops
    )
    train_spec = EpisodeSpec(e.num_turns, pol, par, chat, tokenizer.pad_id)
    # Greedy evaluation is greedy on both sides; a sampled one samples the policy at the
    # evaluation temperature and the partner as in training.
    eval_spec = EpisodeSpec(
        c.eval.num_turns,
        pol.replace(temperature=c.eval.temperature),
        par.replace(temperature=e.partner_temperature if c.eval.temperature > 0 else 0.0),
        chat,
        tokenizer.pad_id,
    )
    return Run(
        config=c,
        tokenizer=tokenizer,
        chat=chat,
        model_cfg=model_cfg,
        base_params=base,
        partner_cfg=partner_cfg,
        partner_params=partner,
        judge=judge,
        eval_judge=eval_judge,
        train_personas=train_p,
        eval_personas=eval_p[first:],
        partners=partners,
        rl=rl,
        widths=widths,
        reward_spec=reward_spec,
        train_spec=train_spec,
        eval_spec=eval_spec,
    )


def describe(run: Run) -> dict[str, Any]:
    return {
        "model": dataclasses.asdict(run.model_cfg),
        "judge": run.judge.source,
        "eval_judge": run.eval_judge.source,
        "train_personas": len(run.train_personas),
        "eval_personas": len(run.eval_personas),
        "input_widths": dataclasses.asdict(run.widths),
    }
