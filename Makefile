# Thin wrappers; the settings live in pyproject.toml. Each target bootstraps .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

DIR ?= .
BIND ?= 127.0.0.1
PORT ?= 8000
STRATEGY ?= auto
PYTEST_ARGS ?=

.PHONY: serve test check lint format typecheck pytest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The runtime install, for `make serve`.
$(VENV)/.base: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Everything the checks, tests and benchmarks need.
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,lint,bench,metrics]'
	touch $@ $(VENV)/.base

serve: $(VENV)/.base
	$(BIN)/zerocopy serve $(DIR) --bind $(BIND) --port $(PORT) --strategy $(STRATEGY)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(VENV)/.dev
	$(BIN)/mypy

check: lint typecheck

pytest: $(VENV)/.dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: check pytest

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
