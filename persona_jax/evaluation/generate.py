"""Dialogues played by a policy on the persona bank's held-out personas, as text.

The rollout is the training code's own (:func:`persona_jax.envs.episode.rollout_jit` on the
batch :func:`persona_jax.train.evaluation.eval_batch` builds), so evaluation dialogues are
played exactly like the held-out evaluation during training: the partner opens, the policy
and the partner alternate, greedy by default, and after each policy turn a persona probe is
asked on a fork of the policy's cache (``qa_correct``: the keyed option is the policy's most
likely letter). More dialogues than held-out personas are played in rounds with new
openings (the partner's opening line and topic are drawn per round).
"""

from __future__ import annotations

import math

import numpy as np

from persona_jax.envs import tokens as tk
from persona_jax.evaluation.dialogues import TASK_OF_ROLE, EvalDialogue
from persona_jax.models.llama.config import LlamaConfig
from persona_jax.models.llama.model import Params
from persona_jax.parallel.host import to_host
from persona_jax.train.evaluation import play_eval_batch
from persona_jax.train.setup import Run

QA_SOURCE = "policy's most likely option letter after each turn (rollout)"
PARTNER_SPEAKER, USER_SPEAKER = 1, 2


def generate_dialogues(
    run: Run,
    policy_cfg: LlamaConfig,
    policy_params: Params,
    num_dialogues: int,
    *,
    seed: int = 0,
) -> list[EvalDialogue]:
    """``num_dialogues`` greedy dialogues of ``run.eval_spec.num_turns`` policy turns.

    Each round plays every persona of ``run.config.eval.num_personas`` (one compiled shape);
    the last round's extra dialogues are dropped.
    """
    if num_dialogues < 1:
        raise ValueError(f"num_dialogues must be >= 1, got {num_dialogues}")
    if policy_cfg.vocab_size != run.partner_cfg.vocab_size:
        raise ValueError(
            f"the policy's vocabulary ({policy_cfg.vocab_size}) differs from the partner's "
            f"({run.partner_cfg.vocab_size}); turns are spliced as token ids, so both must "
            "share one tokenizer"
        )
    per_round = run.config.eval.num_personas
    out: list[EvalDialogue] = []
    for k in range(math.ceil(num_dialogues / per_round)):
        batch, _, episode = play_eval_batch(run, policy_cfg, policy_params, seed + k)
        out.extend(_texts(run, batch, to_host(episode), k))
    return out[:num_dialogues]


def _decode(run: Run, tokens: np.ndarray, content: np.ndarray) -> str:
    return run.tokenizer.decode(tokens[content], skip_special_tokens=True).strip()


def _texts(run: Run, batch: dict, episode, round_index: int) -> list[EvalDialogue]:
    pol, par = episode.policy, episode.partner
    pol_content = np.asarray(tk.content_mask(pol.mask, pol.lengths, pol.stopped))
    par_content = np.asarray(tk.content_mask(par.mask, par.lengths, par.stopped))
    qa = np.asarray(episode.qa_correct)  # [T, B]
    out = []
    for b, persona_id in enumerate(batch["persona_id"]):
        role = batch["role"][b]
        speakers, texts = [PARTNER_SPEAKER], [batch["opening_line"][b].strip()]
        for t in range(pol.tokens.shape[0]):
            speakers.append(USER_SPEAKER)
            texts.append(_decode(run, pol.tokens[t, b], pol_content[t, b]))
            if t < par.tokens.shape[0]:
                speakers.append(PARTNER_SPEAKER)
                texts.append(_decode(run, par.tokens[t, b], par_content[t, b]))
        out.append(
            EvalDialogue(
                dialogue_id=f"{persona_id}#{round_index}",
                source="generated",
                task=TASK_OF_ROLE[role],
                roles={PARTNER_SPEAKER: batch["partner"][b], USER_SPEAKER: role},
                personas={PARTNER_SPEAKER: "", USER_SPEAKER: batch["persona"][b]},
                speakers=tuple(speakers),
                texts=tuple(texts),
                qa={USER_SPEAKER: tuple(bool(x) for x in qa[:, b])},
                qa_source=QA_SOURCE,
                meta={"persona_id": persona_id, "round": round_index},
            )
        )
    return out
