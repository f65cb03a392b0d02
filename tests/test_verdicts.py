"""Strict verdict parsers, and the release's lenient rules they are audited against.

The verdicts-in-words readers are checked here on invented sentences; their agreement with
explicit verdicts on the released outputs is recorded in :mod:`persona_jax.metrics.verdicts`
(that data never enters the repository).
"""

from __future__ import annotations

import pytest

from persona_jax.metrics.verdicts import (
    inconsistent_from_yes,
    parse_conflict_list,
    parse_index_list,
    parse_prompt_verdict,
    parse_stated_inconsistent,
    parse_stated_no_conflicts,
    parse_yes_no,
    release_inconsistent,
    release_index_list,
    release_probe_correct,
    stated_cues,
    unsettled_reason,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("YES", True),
        ("NO", False),
        ("The reply fits the backstory. NO.", False),
        ("The reply denies the job the persona holds. YES.", True),
        ("**YES**", True),
        ("Verdict: (NO)", False),
        ("NO!", False),
        ("YES (partially)", True),
        ("YES, the line fits what we know of her.", True),
        # Reasons mention the other word in lower case; only capitals are verdicts.
        ("There is no conflict with the background. YES", True),
        ("Yes, it might seem odd, but no. NO.", False),
        # Capitalised words that merely contain a verdict are not verdicts.
        ("NOTHING in the line contradicts the persona. YES", True),
        ("NOTE: nothing here. NO", False),
        # A reason that weighs the other word before the final verdict.
        ("A YES would need the speaker to deny the fact; nothing does. NO.", False),
        ("It is not a clear contradiction (YES) nor a clear fit. NO (though hard to say).", False),
        # The judge echoing the question before answering it.
        ("Is it contradictory, YES or NO: NO", False),
        ("YES/NO? YES.", True),
    ],
)
def test_parse_yes_no_reads_final_verdict(text: str, expected: bool) -> None:
    assert parse_yes_no(text) is expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The line aligns with the persona, so it does not contradict it.",
        "yes",
        "no.",
        # A verdict followed by more judged material is not final: ambiguous.
        "1. first line: YES\n2. second line: NO\n3. third line",
        "NO (a YES would need stronger evidence)",
        "YES. On reflection the line is fine. NO, wait, the date is wrong",
    ],
)
def test_parse_yes_no_refuses_unsettled_output(text: str) -> None:
    assert parse_yes_no(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[]", []),
        ("[ ]", []),
        ("[3,5]", [3, 5]),
        ("[3, 5]", [3, 5]),
        ("[ 3 , 5 , ]", [3, 5]),
        ("Line 4 names another city than line 2 did. [2]", [2]),
        ("It repeats line 3 [3]. Conflicting lines: [3]", [3]),
        ("No conflict.\n\n```python\n[]\n```", []),
        ("[2 is the partner's line, so leave it out] [1]", [1]),
        ("Indices of conflicting lines: [1, 7]\n\nThat is all.", [1, 7]),
    ],
)
def test_parse_index_list_reads_the_list(text: str, expected: list[int]) -> None:
    assert parse_index_list(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "No conflicting lines found.",
        "(Empty list)",
        "[line 3]",
        "[-1]",
        "[1.5]",
        # Two different lists: a first answer and a revised one.
        "It contradicts [1, 3]. On reflection there is no clear conflict: []",
        "[1][3]",
    ],
)
def test_parse_index_list_refuses_unsettled_output(text: str) -> None:
    assert parse_index_list(text) is None


def test_polarity_maps_yes() -> None:
    assert inconsistent_from_yes(True, "yes_inconsistent") is True
    assert inconsistent_from_yes(True, "yes_consistent") is False
    assert inconsistent_from_yes(False, "yes_consistent") is True
    assert inconsistent_from_yes(None, "yes_consistent") is None
    with pytest.raises(ValueError, match="polarity"):
        inconsistent_from_yes(True, "maybe")  # type: ignore[arg-type]


def test_release_rules_are_substring_and_first_bracket() -> None:
    # The release's substring test: any YES anywhere, even in a reason, counts.
    assert release_inconsistent("A YES would be wrong. NO.", "yes_inconsistent")
    assert not release_inconsistent("no verdict at all", "yes_inconsistent")
    # ... and "NO" inside another capitalised word counts under the other polarity.
    assert release_inconsistent("NOTE: it fits. YES", "yes_consistent")
    # First bracket on one line, evaluated; failures and missing brackets are [].
    assert release_index_list("first [1, 2] then [3]") == [1, 2]
    assert release_index_list("[line 3] then [4]") == []
    assert release_index_list("[\n4]") == []
    assert release_index_list("nothing") == []
    assert release_probe_correct("Yes, that matches the key.")
    assert not release_probe_correct("NO")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Stated consistent.
        ("He talks about fixing old radios, so the line does not contradict his hobby.", False),
        ("The reply aligns with her fondness for long hikes.", False),
        ("There is no contradiction with the persona described.", False),
        ("Asking for a worked example is in line with a hands-on way of learning.", False),
        ("The line does not seem to clearly conflict with the background.", False),
        ("The line is not at odds with him: no conflict or inconsistency appears.", False),
        # Stated inconsistent.
        ("He says he never left Ohio, which contradicts the years he spent in Lisbon.", True),
        ("Asking for a lecture seems to contradict a preference for learning by doing.", True),
        ("The cheerful tone does not align with the withdrawn person described.", True),
        ("Such an open admission is out of character for someone this guarded.", True),
        ("Her warm thanks starkly contrasts with her refusal of all help.", True),
        # A concession before the verdict settles; the verdict comes last.
        ("She offers to help, but offering help at all contradicts her wish to be alone.", True),
        # A negation that belongs to another verb does not negate the verdict.
        ("The rent not being paid conflicts with her claim of running a tidy house.", True),
    ],
)
def test_parse_stated_inconsistent_reads_unmixed_words(text: str, expected: bool) -> None:
    assert parse_stated_inconsistent(text) is expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # Mixed: both readings at once.
        ("The line aligns with her love of music and contradicts her dislike of crowds.", None),
        # A reservation after the verdict, in the same sentence or the next.
        (
            "It aligns with his learning style, but the question never touches his goals.",
            "contrast",
        ),
        (
            "The line does not contradict the persona; however, the city is slightly off.",
            "contrast",
        ),
        ("The line aligns with his background. However, he gives the wrong year.", "contrast"),
        # A verdict of degree.
        ("The line somewhat contradicts the persona.", "hedge"),
        ("It does not entirely align with the background.", "hedge"),
        ("It partially aligns with the persona described.", "hedge"),
        # The judge could not judge.
        (
            "The line seems empty, so it is impossible to compare it with the background.",
            "not judged",
        ),
        ("The student did not say anything, so alignment cannot be assessed.", "not judged"),
        # Several lines judged in one output.
        ("1. First line: aligns with the persona.\n2. Second line: also aligns.", "several items"),
        # No verdict phrase at all.
        ("The speaker talks about the weather and the bus timetable.", None),
    ],
)
def test_parse_stated_inconsistent_refuses_mixed_or_open_words(
    text: str, reason: str | None
) -> None:
    assert parse_stated_inconsistent(text) is None
    assert unsettled_reason(text) == reason


def test_stated_cues_read_negations_first() -> None:
    assert stated_cues("It does not contradict her past and aligns with her job.") == [
        ("negated conflict", "agrees"),
        ("alignment", "agrees"),
    ]
    assert stated_cues("It is not consistent with what he said.") == [
        ("negated alignment", "contradicts")
    ]


@pytest.mark.parametrize("polarity", ["yes_inconsistent", "yes_consistent"])
def test_parse_prompt_verdict_words_bypass_polarity(polarity: str) -> None:
    agrees = "She mentions her two sisters, so the line does not contradict her background."
    contradicts = "He claims to hate the sea, which contradicts his life as a sailor."
    assert parse_prompt_verdict(agrees, polarity) is False  # type: ignore[arg-type]
    assert parse_prompt_verdict(contradicts, polarity) is True  # type: ignore[arg-type]


def test_parse_prompt_verdict_explicit_verdict_comes_first() -> None:
    # The explicit YES/NO decides through the polarity, whatever the reason says.
    text = "The line contradicts her job. NO"
    assert parse_prompt_verdict(text, "yes_inconsistent") is False
    assert parse_prompt_verdict(text, "yes_consistent") is True
    # An unsettled explicit verdict is not rescued by the words around it.
    unsettled = "It aligns. YES. On reflection the line is fine. NO, wait, the date is wrong"
    assert parse_yes_no(unsettled) is None
    assert parse_prompt_verdict(unsettled, "yes_inconsistent") is None
    # A YES/NO in lower case is an answer outside the format: not read from the words.
    assert parse_prompt_verdict("The line aligns with the persona (yes).", "yes_consistent") is None
    assert parse_prompt_verdict("Yes, it contradicts the persona.", "yes_inconsistent") is None
    with pytest.raises(ValueError, match="polarity"):
        parse_prompt_verdict("It aligns with the persona.", "maybe")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "No conflicting lines found.",
        "There are no conflicting lines in the dialogue so far.",
        "(Empty list)",
        "Empty list because there are no conflicting lines.",
        "The line does not conflict with any earlier line. [None]",
        "The line does not conflict with anything the speaker said before.",
        "The line is consistent with the speaker's earlier remarks.",
        "The list of conflicting lines is empty.",
        "Conflicting lines: none",
        # The answer put in words stands, as a written [] would, beside a reservation.
        "The line stays consistent. However, the tone shifts a little.\nNo conflicting lines.",
    ],
)
def test_parse_conflict_list_reads_no_conflict_in_words(text: str) -> None:
    assert parse_index_list(text) is None
    assert parse_stated_no_conflicts(text)
    assert parse_conflict_list(text) == []


@pytest.mark.parametrize(
    "text",
    [
        # A conflict in words only: there are no indices to read.
        "The line contradicts what she said about her brother.",
        "Line 4 said she was an only child, so this line conflicts with it.",
        "The line may seem to conflict with line 2, but on reflection it does not.",
        # Mixed: a conflict stated beside the no-conflict answer.
        "The line contradicts her earlier claim. No conflicting lines found.",
        # A bracket with a number is an attempt at a list, however malformed.
        "No conflict with [line 3].",
        "There is no clear conflict.\n[0, 0, 0, 0,",
        # A finding of no conflict that hedges or weighs sides, without the answer in words.
        "The line does not directly conflict with earlier lines.",
        "The line does not contradict the history; however, the dates differ.",
        # The judge could not judge.
        "The line is empty, so there is nothing to compare; no conflicting lines.",
        "",
    ],
)
def test_parse_conflict_list_refuses_unsettled_words(text: str) -> None:
    assert parse_conflict_list(text) is None


def test_parse_conflict_list_written_list_comes_first() -> None:
    # A written list decides, even beside words that say otherwise ...
    assert parse_conflict_list("No conflicting lines found. [3]") == [3]
    assert parse_conflict_list("It conflicts with line 2. [2]") == [2]
    # ... and lists that disagree stay unsettled: the words do not get to pick.
    assert parse_conflict_list("It agrees with [2] and [4]. No conflicting lines.") is None
