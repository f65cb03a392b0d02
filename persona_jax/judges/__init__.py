"""Consistency judges: the input format, the LLM judge and the distilled on-device judge."""
