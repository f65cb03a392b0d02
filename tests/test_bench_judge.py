"""`python -m persona_jax.bench judge` at tiny sizes: both judges timed on the same lines."""

from __future__ import annotations

import json

import pytest

from persona_jax.bench import judge as bench


def _asset_or_skip() -> None:
    from persona_jax.assets import AssetError, default_model_dir

    try:
        default_model_dir()
    except AssetError as err:
        pytest.skip(f"the tiny model borrows the asset's tokenizer: {err}")


def test_bank_lines_need_no_released_data() -> None:
    contexts, origin = bench.bank_lines(7)
    assert len(contexts) == 7 and "persona bank" in origin
    for c in contexts:
        assert c.persona.strip() and c.line.strip() and c.speaker == 2
        assert c.persona not in c.line  # the line comes from another persona


def test_whole_dialogue_lines_keep_dialogues_together(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """``--whole_dialogues``: every labelled line of seeded dialogues, in file order, cut at n."""
    from persona_jax.data import paths
    from persona_jax.evaluation import agreement
    from persona_jax.evaluation.lines import LineContext

    def line(dialogue: str, k: int, label: int | None = 1):
        ctx = LineContext("p", {1: "a", 2: "b"}, (2,) * (k + 1), tuple(map(str, range(k + 1))))
        return agreement.LabelledContext(ctx, "therapy", "s", dialogue, "test", label, None)

    lines = [line(d, k) for d in "abcd" for k in range(3)] + [line("a", 9, None)]
    monkeypatch.setattr(paths, "consistent_llms_dir", lambda: tmp_path)
    monkeypatch.setattr(agreement, "load_labelled", lambda root, split: (lines, None))
    contexts, origin = bench.released_lines(7, 0, whole_dialogues=True)
    assert len(contexts) == 7 and "3 whole dialogues" in origin
    ks = [len(c.texts) - 1 for c in contexts]
    assert ks == [0, 1, 2, 0, 1, 2, 0]  # dialogues kept whole and in order; unlabelled left out
    drawn, _ = bench.released_lines(7, 0)
    assert len(drawn) == 7


def test_bench_judge_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    _asset_or_skip()
    argv = ["--model", "tiny", "--lines", "5", "--batch", "2", "--llm_batch", "2"]
    argv += ["--max_new_tokens", "4", "--repeats", "1"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert result["bench"] == "judge" and result["lines"] == 5
    assert result["random_head"] is True
    assert any("RANDOM HEAD" in line for line in out)
    assert result["distilled_lines_s"] > 0 and result["llm_lines_s"] > 0
    assert result["whole_dialogues"] is False
    assert result["ratio"] == pytest.approx(
        result["distilled_lines_s"] / result["llm_lines_s"], rel=1e-2
    )
    # The warm-up compiled every shape the timed LLM pass used.
    assert result["llm_compilations_in_timed_pass"] == 0
    assert result["target_met"] == (result["ratio"] >= 100)


def test_bench_judge_both_verdicts_warms_up_the_line_to_line_prompts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--verdicts both`: lines with an earlier line of their speaker also get the LLM's
    line-to-line prompt, whose shapes the warm-up compiles too."""
    _asset_or_skip()
    from persona_jax.evaluation.lines import LineContext

    contexts, _ = bench.bank_lines(3)
    later = [
        LineContext(c.persona, c.roles, (*c.speakers, 1, 2), (*c.texts, "Why?", "I said so."))
        for c in contexts[:2]
    ]
    monkeypatch.setattr(
        bench, "released_lines", lambda n, seed, whole: (contexts + later, "test lines")
    )
    # Prompt-to-line calls of 4 and 1 prompts, line-to-line of 2: a shape of its own.
    argv = ["--model", "tiny", "--lines", "5", "--batch", "2", "--llm_batch", "4"]
    argv += ["--max_new_tokens", "4", "--repeats", "1", "--verdicts", "both"]
    assert bench.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["verdicts"] == "both" and result["lines"] == 5
    assert result["llm_l2l_asked"] == 2  # only the two lines with an earlier own line
    assert result["llm_compilations_in_timed_pass"] == 0


def test_bench_judge_compares_a_shallower_judge_against_the_same_llm_run(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--compare DIR`: another judge timed on the same lines, divided by the same LLM run."""
    _asset_or_skip()
    import jax

    from persona_jax.evaluation.factory import load_base
    from persona_jax.judges.distilled import JudgeConfig, init_head, save_judge

    base = load_base("", tiny=True, seed=0)
    jc = JudgeConfig(
        num_layers=1,
        hidden=8,
        max_len=128,
        base_vocab_size=base.config.vocab_size,
        base_hidden_size=base.config.hidden_size,
    )
    save_judge(tmp_path / "one_layer", jc, init_head(jc, jax.random.key(3)))
    argv = ["--model", "tiny", "--lines", "3", "--batch", "2", "--llm_batch", "2"]
    argv += ["--max_new_tokens", "4", "--repeats", "1", "--compare", str(tmp_path / "one_layer")]
    assert bench.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (other,) = result["compared"]
    assert other["judge"] == str(tmp_path / "one_layer") and other["num_layers"] == 1
    assert other["ratio"] == pytest.approx(
        other["distilled_lines_s"] / result["llm_lines_s"], rel=1e-2
    )
    assert other["target_met"] == (other["ratio"] >= 100)


def test_bench_judge_compare_needs_a_judge_there(tmp_path) -> None:
    _asset_or_skip()
    with pytest.raises(FileNotFoundError, match=r"no judge_config\.json"):
        bench.main(["--model", "tiny", "--lines", "2", "--compare", str(tmp_path)])
