"""Episode input widths fitted to the persona bank: tight, never cutting, clear when too small."""

import dataclasses

import numpy as np
import pytest

from persona_jax.data.partners import load_partners
from persona_jax.data.persona_bank import load_personas
from persona_jax.data.pipelines import episode_records
from persona_jax.envs.chat_format import ChatFormat
from persona_jax.envs.inputs import (
    WIDTH_MULTIPLE,
    InputStats,
    InputWidths,
    build_inputs,
    required_widths,
    resolve_widths,
)


@pytest.fixture(scope="module")
def tokenizer():
    from persona_jax.assets import AssetError, default_model_dir
    from persona_jax.text.tokenizer import Tokenizer

    try:
        return Tokenizer.from_pretrained(default_model_dir())
    except AssetError as e:
        pytest.skip(str(e))


def _every_episode(role, partners):
    """Records of every persona of the role with every opening line (and topic) of its partner."""
    personas = load_personas(role, "train") + load_personas(role, "eval")
    spec = partners[role]
    out = []
    for r in episode_records(personas, partners):
        for topic in spec.topics or (None,):
            system = (
                spec.render_system_prompt(subject=topic.subject, grade=topic.grade_level)
                if topic
                else spec.render_system_prompt()
            )
            for i in range(len(spec.opening_lines)):
                line = spec.render_opening_line(i, topic=topic.topic if topic else None)
                out.append({**r, "partner_prompt": system, "opening_line": line})
    return personas, out


def _build(records, personas, tokenizer, chat, widths, stats=None):
    batch = {k: [r[k] for r in records] for k in records[0]}
    return build_inputs(
        batch,
        {p.id: p for p in personas},
        tokenizer,
        chat,
        num_turns=3,
        widths=widths,
        pad_id=tokenizer.pad_id,
        stats=stats,
    )


@pytest.mark.parametrize("role", ["patient", "student", "chat"])
def test_required_widths_are_exact_over_every_persona_and_opening(tokenizer, role):
    partners = load_partners()
    chat = ChatFormat.from_tokenizer(tokenizer)
    personas, records = _every_episode(role, partners)
    need = required_widths(personas, partners, tokenizer, chat)
    stats = InputStats()
    inputs = _build(records, personas, tokenizer, chat, need, stats)
    assert stats.truncated == {}  # nothing cut at the required widths
    # The longest real row of each piece fills its width exactly (the widths are not loose);
    # the partner prompt is a bound over (system, opening) pairs that need not co-occur.
    assert int(np.asarray(inputs.policy_prompt_mask).sum(1).max()) == need.policy_prompt
    assert int(np.asarray(inputs.opening_mask).sum(1).max()) == need.opening
    assert int(np.asarray(inputs.persona_mask).sum(1).max()) == need.persona
    assert int(np.asarray(inputs.partner_prompt_mask).sum(1).max()) <= need.partner_prompt
    # One token fewer for the role prompt: the longest prompt no longer fits.
    short = dataclasses.replace(need, policy_prompt=need.policy_prompt - 1)
    with pytest.raises(ValueError, match=r"policy_prompt .* over its width"):
        _build(records, personas, tokenizer, chat, short)


def test_resolve_fits_zeros_keeps_explicit_and_refuses_too_small():
    need = InputWidths(policy_prompt=338, partner_prompt=104, opening=22, persona=157, qa=76)
    fitted = resolve_widths(dict.fromkeys(("policy_prompt", "partner_prompt", "qa"), 0), need)
    assert fitted.policy_prompt == 352 and fitted.partner_prompt == 112 and fitted.qa == 80
    assert fitted.opening == 32 and fitted.persona == 160  # absent keys fit too
    assert all(v % WIDTH_MULTIPLE == 0 for v in dataclasses.asdict(fitted).values())
    assert resolve_widths({"policy_prompt": 400, "persona": 100}, need).policy_prompt == 400
    assert resolve_widths({"persona": 100}, need).persona == 100  # free text: cut and counted
    with pytest.raises(ValueError, match=r"episode\.widths\.qa=64 is below the 76 tokens"):
        resolve_widths({"qa": 64}, need)
    with pytest.raises(ValueError, match="use 0"):
        resolve_widths({"opening": -1}, need)
    with pytest.raises(ValueError, match=r"unknown episode\.widths keys"):
        resolve_widths({"prompt": 10}, need)


def test_build_run_fits_widths_and_refuses_a_width_below_the_bank():
    from configs import tiny
    from persona_jax.train import setup

    run = setup.build_run(tiny.get_config())
    w = run.widths
    assert all(v > 0 and v % WIDTH_MULTIPLE == 0 for v in dataclasses.asdict(w).values())
    assert setup.describe(run)["input_widths"] == dataclasses.asdict(w)
    c = tiny.get_config()
    c.episode.widths.policy_prompt = 64
    with pytest.raises(setup.RunConfigError, match=r"episode\.widths\.policy_prompt=64"):
        setup.build_run(c)
