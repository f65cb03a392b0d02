"""Per-utterance rewards computed on device from token ids (judge scores and penalties)."""
