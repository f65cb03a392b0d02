"""Persona bank, partner prompts and dataset plumbing.

The bank lives in ``personas/*.json`` so that people can review and extend it
without touching code; :mod:`persona_jax.data.persona_bank` (personas) and
:mod:`persona_jax.data.partners` (role prompts, partners) are the only gates through
which they enter training, and they refuse malformed entries loudly.
"""
