"""Strict verdict parsers, and the release's lenient rules they are audited against."""

from __future__ import annotations

import pytest

from persona_jax.metrics.verdicts import (
    inconsistent_from_yes,
    parse_index_list,
    parse_yes_no,
    release_inconsistent,
    release_index_list,
    release_probe_correct,
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
