"""Benchmarks: `python -m persona_jax.bench <name> [options]` (see `__main__`)."""
