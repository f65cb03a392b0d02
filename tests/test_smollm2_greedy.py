"""Our greedy decoding of the real SmolLM2-135M-Instruct against transformers (PyTorch, f32).

Ours runs the three prompts as one left-padded batch through the bucketed, cached sampler;
transformers runs each prompt alone (no padding), so any mismatch in padding, positions, the
KV cache or the weights shows up as a different token. Float32 on both sides differs only by
summation order, so a divergence is accepted only where the reference itself is a near-tie.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow

NEW_TOKENS = 32
NEAR_TIE = 1e-3
CONVERSATIONS = [
    [
        {"role": "system", "content": "You are Maria, a 34-year-old nurse who loves hiking."},
        {"role": "user", "content": "What did you do last weekend?"},
    ],
    [
        {"role": "system", "content": "You are a retired teacher who speaks briefly."},
        {"role": "user", "content": "Tell me about your favourite student."},
    ],
    [{"role": "user", "content": "List three fruits that are red."}],
]


@pytest.fixture(scope="module")
def model_dir():
    from persona_jax import assets

    return assets.fetch(verbose=False)


def test_chat_template_matches_transformers(model_dir):
    from transformers import AutoTokenizer

    from persona_jax.text import Tokenizer

    ours = Tokenizer.from_pretrained(model_dir)
    hf = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    for conv in CONVERSATIONS:
        want = hf.apply_chat_template(conv, add_generation_prompt=True, tokenize=True)
        want = want["input_ids"] if isinstance(want, dict) or hasattr(want, "keys") else want
        assert ours.apply_chat_template(conv) == list(want)
    im_end = hf.convert_tokens_to_ids("<|im_end|>")
    assert im_end in ours.stop_ids and ours.eos_ids == (hf.eos_token_id,)


def test_greedy_matches_transformers(model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from persona_jax.sampling import Sampler, SamplingParams
    from persona_jax.text import Tokenizer
    from persona_jax.weights import load_pretrained

    tok = Tokenizer.from_pretrained(model_dir)
    config, params = load_pretrained(model_dir)
    prompts = [tok.apply_chat_template(c) for c in CONVERSATIONS]
    sp = SamplingParams(temperature=0.0, max_new_tokens=NEW_TOKENS, stop_ids=tok.eos_ids)
    ours = Sampler(config, params, tok).generate(prompts, sp)

    hf = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([prompt])
        with torch.no_grad():
            out = hf.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                use_cache=True,
                eos_token_id=list(tok.eos_ids),
                pad_token_id=tok.pad_id,
                output_logits=True,
                return_dict_in_generate=True,
            )
        want = out.sequences[0, len(prompt) :].tolist()
        got = ours.tokens[i]
        print(f"prompt {i}: {tok.decode(got)!r}")
        diff = next((j for j, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
        if diff is None:
            assert len(got) == len(want), f"prompt {i}: lengths {len(got)} vs {len(want)}"
            continue
        top2 = np.sort(out.logits[diff][0].float().numpy())[-2:]
        gap = float(top2[1] - top2[0])
        print(f"prompt {i}: diverged at step {diff} (ours {got[diff]}, hf {want[diff]}), "
              f"hf top-2 gap {gap:.2e}")  # fmt: skip
        assert gap < NEAR_TIE, (
            f"prompt {i}: greedy differs at step {diff} ({got[diff]} vs {want[diff]}) "
            f"although transformers' top-2 logit gap is {gap:.3g} >= {NEAR_TIE}"
        )
