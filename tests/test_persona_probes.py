"""Quality checks on the probes and descriptions that the schema cannot express.

The simulated user sees only a persona's ``description``; Q&A consistency asks it the
persona's probes. So a probe's key has to follow from the description, and the key must
not be guessable from the options alone (e.g. by always picking the longest option).
"""

from __future__ import annotations

import re

import pytest

from persona_jax.data.persona_bank import ROLES, Persona, load_personas

# A key that is strictly the longest option in more than this fraction of a role's probes
# hands a length-biased guesser free points (chance is about 1/4 with 4 or 5 options).
MAX_LONGEST_KEY_FRACTION = 0.3

_STOPWORD_TEXT = (
    "a an the and or but of to in on at for with from by about as into over after before is "
    "are was were be been being am do does did have has had not no nor so than that this "
    "these those it its i me my mine we our you your he him his she her they them their "
    "what which who whom when where why how all any some most more very just only also too "
    "can could would should will may might must one then there here out up i'm i've i'd"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _content_words(text: str) -> set[str]:
    words = re.findall(r"[^\W_]+(?:'[^\W_]+)?", text.casefold())
    return {w for w in words if w not in _STOPWORDS and (len(w) >= 3 or w.isdigit())}


def _grounded(answer: str, description: str) -> bool:
    """The answer shares a content word, or a five-letter stem, with the description."""
    source = _content_words(description)
    stems = {w[:5] for w in source if len(w) >= 5}
    return any(w in source or w[:5] in stems for w in _content_words(answer))


def _longest_key_fraction(personas: list[Persona]) -> float:
    probes = [probe for persona in personas for probe in persona.probes]
    longest = 0
    for probe in probes:
        lengths = [len(option) for option in probe.options]
        key = lengths[probe.answer]
        longest += key == max(lengths) and lengths.count(key) == 1
    return longest / len(probes)


def test_patient_keys_follow_from_the_description() -> None:
    ungrounded = [
        (persona.id, probe.question, probe.keyed_option)
        for persona in load_personas("patient")
        for probe in persona.probes
        if not _grounded(probe.keyed_option, persona.description)
    ]
    assert ungrounded == []


def test_patient_description_states_the_facts_it_is_probed_on() -> None:
    for persona in load_personas("patient"):
        assert re.search(rf"\b{persona.facts['age']}\b", persona.description), persona.id


def test_grounding_check_rejects_an_unrelated_key() -> None:
    description = "I'm Dana, a nurse on night shifts. My cat Biscuit keeps me company."
    assert _grounded("Night shifts as a nurse", description)
    assert _grounded("A cat called Biscuit", description)
    assert not _grounded("A golden retriever", description)


@pytest.mark.parametrize("role", ROLES)
def test_keys_are_not_given_away_by_length(role: str) -> None:
    assert _longest_key_fraction(load_personas(role)) <= MAX_LONGEST_KEY_FRACTION
