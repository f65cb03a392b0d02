"""Persona bank, partner prompts and dataset plumbing.

The bank lives in ``personas/*.json`` so that people can review and extend it
without touching code; :mod:`persona_jax.data.persona_bank` is the only gate
through which it enters training, and it refuses malformed entries loudly.
"""
