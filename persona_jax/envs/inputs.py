"""Host side of an episode: episode-pipeline records -> padded `EpisodeInputs` arrays.

Text is tokenised once per batch here, with fixed widths from the config, so the jitted
rollout always sees the same shapes (one compilation per run). Over-long texts are cut with a
count kept in `InputStats`, never silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from persona_jax.data.partners import PartnerSpec, format_persona_prompt
from persona_jax.data.persona_bank import Persona
from persona_jax.envs.chat_format import ChatFormat
from persona_jax.envs.episode import EpisodeInputs

LETTERS = "ABCDE"
QA_TEMPLATE = (
    "Quick check-in question, answer as yourself: {question}\n{options}\n"
    "Reply with the letter of your answer only."
)
PARTNER_KICKOFF = "Hello."


@dataclasses.dataclass(frozen=True)
class InputWidths:
    """Static token widths of the episode inputs."""

    policy_prompt: int = 384
    partner_prompt: int = 160
    opening: int = 48
    persona: int = 224
    qa: int = 128


# Fitted widths are rounded up to a multiple of this (friendlier shapes for the matmuls).
WIDTH_MULTIPLE = 16
# Pieces that end in a generation prompt or hold a whole probe: never cut, so a configured
# width below what the persona bank needs is an error. The others (opening line, persona text
# for the judge) are free text cut at one end and counted in `InputStats`.
STRUCTURED_WIDTHS = ("policy_prompt", "partner_prompt", "qa")


def required_widths(
    personas: Sequence[Persona],
    partners: Mapping[str, PartnerSpec],
    tokenizer: Any,
    chat: ChatFormat,
) -> InputWidths:
    """The fewest tokens each input needs so that no episode of these personas is cut: the
    longest role prompt with the longest opening line of its partner, the longest partner
    prompt, opening line, persona text and probe.

    Every padded column is computed in every prefill, decode step and update of a run, so
    fixed widths sized for the largest persona bank one might load cost real time on a small
    machine. Prompt lengths add up piecewise (`ChatFormat.prompt` encodes its parts apart),
    so the maxima are exact without tokenising every persona-opening pair.
    """
    if not personas:
        raise ValueError("required_widths got no personas")
    enc = lambda s: len(tokenizer.encode(s))
    frame = len(chat.system_header) + len(chat.system_to_user) + len(chat.user_to_assistant)
    kickoff = enc(PARTNER_KICKOFF)
    need = {f.name: 1 for f in dataclasses.fields(InputWidths)}
    for role in sorted({p.role for p in personas}):
        spec = partners[role]
        topics = spec.topics or (None,)
        openings = {
            spec.render_opening_line(i, topic=t.topic if t else None)
            for i in range(len(spec.opening_lines))
            for t in topics
        }
        systems = {
            spec.render_system_prompt(subject=t.subject, grade=t.grade_level)
            if t
            else spec.render_system_prompt()
            for t in topics
        }
        longest_opening = max(enc(o) for o in openings)
        mine = [p for p in personas if p.role == role]
        longest_prompt = max(enc(format_persona_prompt(p, partners)) for p in mine)
        fits = {
            "policy_prompt": frame + longest_prompt + longest_opening,
            "partner_prompt": frame + max(enc(s) for s in systems) + kickoff + longest_opening,
            "opening": longest_opening,
            "persona": max(enc(p.description) for p in mine),
            "qa": max(enc(qa_text(q.question, q.options)) for p in mine for q in p.probes),
        }
        need = {k: max(v, fits[k]) for k, v in need.items()}
    return InputWidths(**need)


def resolve_widths(configured: Mapping[str, int], required: InputWidths) -> InputWidths:
    """Configured widths with each 0 replaced by the required width rounded up to
    `WIDTH_MULTIPLE`. A configured structured width below the requirement is refused here,
    before any model is run, rather than by the first batch that meets the long persona."""
    unknown = set(configured) - {f.name for f in dataclasses.fields(InputWidths)}
    if unknown:
        raise ValueError(f"unknown episode.widths keys: {sorted(unknown)}")
    out = {}
    for f in dataclasses.fields(InputWidths):
        want = int(configured.get(f.name, 0))
        need = getattr(required, f.name)
        if want < 0:
            raise ValueError(f"episode.widths.{f.name}={want}; use 0 (fit) or a positive width")
        if want == 0:
            want = -(-need // WIDTH_MULTIPLE) * WIDTH_MULTIPLE
        elif want < need and f.name in STRUCTURED_WIDTHS:
            raise ValueError(
                f"episode.widths.{f.name}={want} is below the {need} tokens the longest "
                f"{f.name} of these personas needs; raise it or set 0 to fit it"
            )
        out[f.name] = want
    return InputWidths(**out)


@dataclasses.dataclass
class InputStats:
    truncated: dict[str, int] = dataclasses.field(default_factory=dict)

    def count(self, field: str) -> None:
        self.truncated[field] = self.truncated.get(field, 0) + 1


def letter_ids(tokenizer: Any) -> list[int]:
    """Token id of each option letter; the letters must be single tokens."""
    ids = []
    for letter in LETTERS:
        enc = tokenizer.encode(letter)
        if len(enc) != 1:
            raise ValueError(f"option letter {letter!r} is not a single token: {enc}")
        ids.append(enc[0])
    return ids


def _left_pad(
    rows: Sequence[Sequence[int]],
    width: int,
    pad: int,
    name: str,
    stats: InputStats,
    keep: str = "error",
    ids: Sequence[str] = (),
):
    """Left-pad to `width`. Structured pieces (prompts ending in a generation prompt) must fit
    (`keep="error"`); free text may be cut at the head or tail, counted in `stats`."""
    out = np.full((len(rows), width), pad, np.int32)
    mask = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        r = list(r)
        if len(r) > width:
            if keep == "error":
                who = ids[i] if i < len(ids) else f"row {i}"
                raise ValueError(
                    f"{name} of {who} is {len(r)} tokens, over its width {width}; raise "
                    f"episode.widths.{name} in the config"
                )
            stats.count(name)
            r = r[-width:] if keep == "tail" else r[:width]
        if r:
            out[i, width - len(r) :] = r
            mask[i, width - len(r) :] = True
    return out, mask


def qa_text(question: str, options: Sequence[str]) -> str:
    opts = "\n".join(f"{LETTERS[i]}) {o}" for i, o in enumerate(options))
    return QA_TEMPLATE.format(question=question, options=opts)


def build_inputs(
    batch: Mapping[str, list[Any]],
    personas: Mapping[str, Persona],
    tokenizer: Any,
    chat: ChatFormat,
    *,
    num_turns: int,
    widths: InputWidths,
    pad_id: int,
    repeat: int = 1,
    stats: InputStats | None = None,
) -> EpisodeInputs:
    """Tokenise a batch of episode records; each record repeated `repeat` times in a row
    (k rollouts per persona for RLOO/GRPO groups)."""
    stats = stats if stats is not None else InputStats()
    enc = lambda s: list(tokenizer.encode(s))
    letters = letter_ids(tokenizer)
    pp, qp, op, pe, qa_rows, qa_opts, qa_ans = [], [], [], [], [], [], []
    for i in range(len(batch["persona_id"])):
        persona = personas[batch["persona_id"][i]]
        opening = batch["opening_line"][i]
        pp.append(chat.prompt(tokenizer, batch["user_prompt"][i], opening))
        partner = chat.prompt(tokenizer, batch["partner_prompt"][i], PARTNER_KICKOFF) + enc(opening)
        qp.append(partner)
        op.append(enc(opening))
        pe.append(enc(persona.description))
        rows, opts, ans = [], [], []
        for t in range(num_turns):
            probe = persona.probes[t % len(persona.probes)]
            rows.append(enc(qa_text(probe.question, probe.options)))
            opts.append([letters[j] if j < len(probe.options) else -1 for j in range(5)])
            ans.append(probe.answer)
        qa_rows.append(rows)
        qa_opts.append(opts)
        qa_ans.append(ans)
    rep = lambda x: np.repeat(x, repeat, axis=0)
    ids = batch["persona_id"]
    pp_a, pp_m = _left_pad(pp, widths.policy_prompt, pad_id, "policy_prompt", stats, ids=ids)
    qp_a, qp_m = _left_pad(qp, widths.partner_prompt, pad_id, "partner_prompt", stats, ids=ids)
    op_a, op_m = _left_pad(op, widths.opening, pad_id, "opening", stats, "tail")
    pe_a, pe_m = _left_pad(pe, widths.persona, pad_id, "persona", stats, "head")
    flat = [r for rows in qa_rows for r in rows]
    qa_ids = [pid for pid in ids for _ in range(num_turns)]
    qa_a, qa_m = _left_pad(flat, widths.qa, pad_id, "qa", stats, ids=qa_ids)
    b = len(qa_rows)
    roles = batch.get("role")
    other = contrast_rows(rep(ids), None if roles is None else rep(roles))
    persona_rows, persona_mask_rows = rep(pe_a), rep(pe_m)
    return EpisodeInputs(
        policy_prompt=jnp.asarray(rep(pp_a)),
        policy_prompt_mask=jnp.asarray(rep(pp_m)),
        partner_prompt=jnp.asarray(rep(qp_a)),
        partner_prompt_mask=jnp.asarray(rep(qp_m)),
        opening=jnp.asarray(rep(op_a)),
        opening_mask=jnp.asarray(rep(op_m)),
        persona=jnp.asarray(persona_rows),
        persona_mask=jnp.asarray(persona_mask_rows),
        qa_tokens=jnp.asarray(rep(qa_a.reshape(b, num_turns, -1))),
        qa_mask=jnp.asarray(rep(qa_m.reshape(b, num_turns, -1))),
        qa_option_ids=jnp.asarray(rep(np.asarray(qa_opts, np.int32))),
        qa_answer=jnp.asarray(rep(np.asarray(qa_ans, np.int32))),
        contrast_persona=jnp.asarray(persona_rows[other]),
        contrast_persona_mask=jnp.asarray(persona_mask_rows[other]),
        has_contrast=jnp.asarray(other != np.arange(len(other))),
    )


def contrast_rows(persona_ids: Sequence[str], roles: Sequence[str] | None = None) -> np.ndarray:
    """Row b -> the next row (cyclically) holding another persona of the same role; b itself
    when there is none. Rows of one RLOO/GRPO group (same persona) share their contrast."""
    n = len(persona_ids)
    out = np.arange(n)
    for b in range(n):
        for step in range(1, n):
            j = (b + step) % n
            same_role = roles is None or roles[j] == roles[b]
            if same_role and persona_ids[j] != persona_ids[b]:
                out[b] = j
                break
    return out
