"""Multi-turn conversation environments: the simulated user against a partner model."""
