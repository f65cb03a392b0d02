"""Consistency metrics of the paper and the strict readers of judge outputs they rest on."""

from persona_jax.metrics.consistency import (
    LineConflicts,
    MetricResult,
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
from persona_jax.metrics.verdicts import (
    POLARITIES,
    Polarity,
    inconsistent_from_yes,
    parse_index_list,
    parse_yes_no,
)

__all__ = [
    "POLARITIES",
    "LineConflicts",
    "MetricResult",
    "Polarity",
    "PolarityError",
    "count_conflicts",
    "inconsistent_from_yes",
    "line_to_line",
    "parse_index_list",
    "parse_yes_no",
    "probe_grades",
    "prompt_to_line",
    "qa_accuracy",
    "release_speaker_scores",
    "resolve_polarity",
    "speaker_scores",
]
