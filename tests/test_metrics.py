"""The three consistency metrics, polarity resolution and line labelling on invented dialogues.

Every dialogue here is written for these tests, in the release's file format, with answers
worked out by hand in the comments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from persona_jax.data.release_labels import BuildReport, iter_labelled_lines
from persona_jax.data.released import ReleasedFormatError, load_dialogues
from persona_jax.metrics.consistency import (
    LineConflicts,
    PolarityError,
    count_conflicts,
    line_to_line,
    probe_grades,
    prompt_to_line,
    qa_accuracy,
    release_speaker_scores,
    resolve_polarity,
    speaker_scores,
)

KEEPER = (
    "Ada kept the lamp of a lighthouse on a windy island for forty years and collects sea glass."
)
BAKER = "Bo bakes bread on the night shift and trains for marathons before dawn."

LINES = [
    "Ada: I tended the island lamp for forty years.",
    "Bo: Just home from the bakery, flour everywhere.",
    "Ada: To be honest I have never seen the sea.",
    "Bo: Tomorrow I run twenty miles before my shift.",
    "Ada: My jar of sea glass is nearly full.",
    "Bo: I hate running and have never tried it.",
]
# Prompt-to-line outputs, YES meaning "contradicts". Line 4's output has no verdict.
PROMPT_OUTPUTS_YES_BAD = [
    "The lamp matches her past. NO.",
    "Fits a baker. NO",
    "She denies the sea she lived beside. YES.",
    "Marathon training fits. NO.",
    "Collecting glass is part of who she is.",
    "He rejects the running he is known for. YES",
]
# Line-to-line outputs for lines 2..5.
INDEX_OUTPUTS = [
    "Line 0 says she kept the lamp; now she never saw the sea. [0]",
    "No conflict. []",
    "Nothing conflicts: [ ]",
    # Names line 3 twice and line 4 (not his): the release counted 3 twice, dropped 4.
    "He contradicts his plan from line 3 [3, 3, 4]",
]


def _dialogue(
    prompt_outputs: list[str],
    p1_prompt: float,
    p2_prompt: float,
    *,
    lines: list[str] = LINES,
    index_outputs: list[str] = INDEX_OUTPUTS,
    p1_index: float = 2 / 3,
    p2_index: float = 1 / 3,
) -> dict[str, Any]:
    return {
        "task_name": "Chatting",
        "P1": KEEPER,
        "P2": BAKER,
        "pturn": 1,
        "rounds": len(lines),
        "conversation": [[i, line] for i, line in enumerate(lines)],
        "eval_prompt_consistency": [[i, out] for i, out in enumerate(prompt_outputs)],
        "P1_prompt_consistency_score": p1_prompt,
        "P2_prompt_consistency_score": p2_prompt,
        "eval_index_consistency": [[i + 2, out] for i, out in enumerate(index_outputs)],
        "P1_index_consistency_score": p1_index,
        "P2_index_consistency_score": p2_index,
    }


def _write(tmp_path: Path, name: str, dialogues: list[dict[str, Any]]) -> Path:
    path = tmp_path / "chatting" / "exp" / "dialogues" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dialogues), encoding="utf-8")
    return path


def test_prompt_to_line_excludes_and_counts_unparsed() -> None:
    result = prompt_to_line([False, True, None, False])
    assert result.score == pytest.approx(2 / 3)
    assert (result.n_scored, result.n_unparsed) == (3, 1)
    assert prompt_to_line([None, None]).score is None
    assert prompt_to_line([]).score is None


def test_line_to_line_sums_over_the_dialogue() -> None:
    # Speaker's lines with 1, 2 and 3 earlier lines; conflicts 1, 0 and unreadable.
    result = line_to_line([LineConflicts(1, 1), LineConflicts(2, 0), LineConflicts(3, None)])
    assert result.score == pytest.approx(1 - 1 / 3)
    assert (result.n_scored, result.n_unparsed) == (2, 1)
    # A line with no earlier line adds nothing; a speaker with one line has no score.
    assert line_to_line([LineConflicts(0, 0), LineConflicts(2, 1)]).score == pytest.approx(0.5)
    assert line_to_line([LineConflicts(0, 0)]).score is None
    assert line_to_line([]).score is None
    with pytest.raises(ValueError, match="negative"):
        line_to_line([LineConflicts(1, -1)])


def test_count_conflicts_rules() -> None:
    speaker_of = [1, 2, 1, 2, 1, 2]
    named = [1, 3, 3, 2, 5, 7]
    # Distinct earlier lines of speaker 2 before line 5: {1, 3}.
    assert count_conflicts(named, 5, speaker_of) == 2
    # The release: every odd index, repeats and out-of-range ones included: 1, 3, 3, 5, 7.
    assert count_conflicts(named, 5, speaker_of, rule="release") == 5


def test_qa_accuracy() -> None:
    result = qa_accuracy([True, True, False, None, True])
    assert result.score == pytest.approx(0.75)
    assert (result.n_scored, result.n_unparsed) == (4, 1)


def test_release_rescoring_reproduces_hand_computed_stored_scores(tmp_path: Path) -> None:
    # Release rule, YES = contradicts: Ada 0 ok, 2 bad, 4 ok (no YES) -> 2/3; Bo 1, 3 ok, 5 bad.
    # Line-to-line: Ada 1 - (1 + 0) / (1 + 2); Bo 1 - (0 + 2) / (1 + 2).
    path = _write(tmp_path, "a.json", [_dialogue(PROMPT_OUTPUTS_YES_BAD, 2 / 3, 2 / 3)])
    (dialogue,) = load_dialogues(path)
    assert resolve_polarity([dialogue]) == "yes_inconsistent"
    ada = release_speaker_scores(dialogue, 1, "yes_inconsistent")
    bo = release_speaker_scores(dialogue, 2, "yes_inconsistent")
    assert ada == pytest.approx({"prompt": 2 / 3, "index": 2 / 3})
    assert bo == pytest.approx({"prompt": 2 / 3, "index": 1 / 3})
    # The strict scores: Ada's unreadable line 4 is left out (1 of 2 parsed lines fine);
    # Bo's line 5 names line 3 once (repeats and Ada's line 4 do not count): 1 - 1 / 3.
    strict_ada = speaker_scores(dialogue, 1, "yes_inconsistent")
    strict_bo = speaker_scores(dialogue, 2, "yes_inconsistent")
    assert (strict_ada["prompt"].score, strict_ada["prompt"].n_unparsed) == (0.5, 1)
    assert strict_ada["index"].score == pytest.approx(2 / 3)
    assert strict_bo["index"].score == pytest.approx(2 / 3)
    assert strict_bo["qa"].score is None


def test_resolve_polarity_reads_yes_as_consistent_when_scores_say_so(tmp_path: Path) -> None:
    outputs = ["Fits. YES", "Fits. YES", "Contradicts. NO", "Fits. YES.", "Fits. YES", "Fits. YES"]
    path = _write(tmp_path, "b.json", [_dialogue(outputs, 2 / 3, 1.0)])
    assert resolve_polarity(load_dialogues(path)) == "yes_consistent"


def test_resolve_polarity_refuses_a_file_that_fits_neither_reading(tmp_path: Path) -> None:
    path = _write(tmp_path, "odd_scores.json", [_dialogue(PROMPT_OUTPUTS_YES_BAD, 0.5, 2 / 3)])
    with pytest.raises(PolarityError, match=r"odd_scores\.json.*neither"):
        resolve_polarity(load_dialogues(path))


def test_resolve_polarity_refuses_an_undecidable_file(tmp_path: Path) -> None:
    outputs = ["It fits."] * len(LINES)
    path = _write(tmp_path, "no_words.json", [_dialogue(outputs, 1.0, 1.0)])
    with pytest.raises(PolarityError, match=r"no_words\.json.*both"):
        resolve_polarity(load_dialogues(path))


def test_speaker_with_one_line_and_no_judged_lines(tmp_path: Path) -> None:
    # Bo says one line: no line-to-line judgement; the release stored 0 for him.
    lines = LINES[:3]
    record = _dialogue(
        PROMPT_OUTPUTS_YES_BAD[:3],
        0.5,
        1.0,
        lines=lines,
        index_outputs=INDEX_OUTPUTS[:1],
        p1_index=0.0,
        p2_index=0.0,
    )
    path = _write(tmp_path, "c.json", [record])
    (dialogue,) = load_dialogues(path)
    assert release_speaker_scores(dialogue, 2, "yes_inconsistent")["index"] == 0.0
    assert release_speaker_scores(dialogue, 1, "yes_inconsistent")["index"] == 0.0
    report = BuildReport()
    labelled = list(iter_labelled_lines(path, report=report))
    assert [line.index_label for line in labelled if line.speaker == 2] == [None]


def test_iter_labelled_lines_labels_history_and_report(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.json", [_dialogue(PROMPT_OUTPUTS_YES_BAD, 2 / 3, 2 / 3)])
    report = BuildReport()
    labelled = {line.line_index: line for line in iter_labelled_lines(path, report=report)}
    # Line 4's prompt verdict is unreadable but its line-to-line verdict is fine.
    assert {i: line.prompt_label for i, line in labelled.items()} == {
        0: 0,
        1: 0,
        2: 1,
        3: 0,
        4: None,
        5: 1,
    }
    assert {i: line.conflict_indices for i, line in labelled.items() if i >= 2} == {
        2: (0,),
        3: (),
        4: (),
        5: (3,),
    }
    assert [labelled[i].index_label for i in (2, 3, 4, 5)] == [1, 0, 0, 1]
    assert labelled[0].index_label is None
    line = labelled[5]
    assert (line.role, line.speaker, line.speaker_name) == ("chat", 2, "Bo")
    assert line.line == "I hate running and have never tried it."
    assert line.history == tuple(LINES[:5])
    assert line.persona == BAKER and line.persona_id != labelled[4].persona_id
    assert line.dialogue_id.endswith("a.json#0")
    assert report.polarity == {"chatting/exp/dialogues/a.json": "yes_inconsistent"}
    assert report.skipped[("chatting", "prompt_to_line", "unparsed verdict")] == 1
    assert report.labels[("chatting", "line_to_line", 1)] == 2
    # Line 5 named line 4 (Ada's): dropped, line kept.
    assert report.dropped_indices["chatting"] == 1
    assert report.unparsed_rate("chatting", "prompt_to_line") == pytest.approx(1 / 6)
    assert "unparsed verdict" in report.format()


def test_qa_grades_against_lost_keys_are_ungradable(tmp_path: Path) -> None:
    record = _dialogue(PROMPT_OUTPUTS_YES_BAD, 2 / 3, 2 / 3)
    question = "Question: Where does Bo work?\n\nA) A bakery\nB) A bank\nC) A farm\n\n"
    # The second probe's key is lost: the release kept one stray character.
    record["P2_backstory_test"] = [[question, question[:-3]], ["Answer: A) A bakery", "m"]]
    record["eval_survey_consistency"] = [
        [LINES[1], 2, ["A) A bakery", "B) A bank"], ["YES", "YES"]],
        [LINES[3], 1, ["C) A farm", "A) A bakery"], ["NO", "YES"]],
        [LINES[5], 1, ["A) A bakery", "A"], ["YES", "NO"]],
    ]
    record["P2_survey_consistency_score"] = 4 / 3
    path = _write(tmp_path, "d.json", [record])
    (dialogue,) = load_dialogues(path)
    assert release_speaker_scores(dialogue, 2, "yes_inconsistent")["qa"] == pytest.approx(4 / 3)
    correct = probe_grades(dialogue, 2)
    assert correct == [True, None, False, None, True, None]
    assert qa_accuracy(correct).score == pytest.approx(2 / 3)
    assert dialogue.probes[2][0].options == ("A bakery", "A bank", "A farm")
    assert (dialogue.probes[2][0].answer, dialogue.probes[2][1].answer) == (0, None)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"pturn": 3}, "pturn"),
        ({"conversation": [[1, "Ada: out of order"]]}, "conversation entry 0"),
        ({"eval_prompt_consistency": [[9, "NO"]]}, "outside the conversation"),
        ({"task_name": "Cooking"}, "task_name"),
    ],
)
def test_malformed_files_are_refused_naming_file_and_dialogue(
    tmp_path: Path, change: dict[str, Any], problem: str
) -> None:
    record = {**_dialogue(PROMPT_OUTPUTS_YES_BAD, 2 / 3, 2 / 3), **change}
    path = _write(tmp_path, "broken.json", [record])
    with pytest.raises(ReleasedFormatError, match=rf"broken\.json dialogue 0: .*{problem}"):
        load_dialogues(path)
