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
	$(BIN)/python -m pip install --quiet -e '.[test,lint,bench,metrics,peers]'
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

# The whole gate: static checks, the test suite, and the benchmark pipeline on tiny sizes
# (artefacts checked, no timing).
test: check pytest bench-check

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Load sweep and peer comparison with wrk (see bench/LOAD.md; the peers include random GETs
# over 3,000 small files and the workers axis against nginx). Extra flags, e.g.
# `make bench-load BENCH_LOAD_ARGS="--quick --workers 1,2"` or
# `make bench-peers BENCH_PEERS_ARGS="--repetitions 5 --workers 1"`.
BENCH_LOAD_ARGS ?=
BENCH_PEERS_ARGS ?=
.PHONY: bench-load bench-peers bench-hardening bench-cold bench-slow bench-idle bench-listing bench-tar

bench-load: $(VENV)/.dev
	$(BIN)/python -m bench.load $(BENCH_LOAD_ARGS)

bench-peers: $(VENV)/.dev
	$(BIN)/python -m bench.peers $(BENCH_PEERS_ARGS)

# Hardening benchmarks (bench/hardening/; not run in CI): hot p99 under cold 256 MiB
# downloads, zerocopy with and without offload beside nginx with and without `aio threads`;
# slowhttptest attacks; 5,000 idle connections; a probe's stall and the peak RSS while eight
# clients list a directory of 200,000 entries, beside nginx's autoindex; server CPU per GiB of
# a 1 GiB directory downloaded as tar against the same files one by one, per strategy
# (`make bench-listing BENCH_HARDENING_ARGS="--data /var/tmp/zerocopy-hardening"` keeps the
# directory for the next run).
BENCH_HARDENING_ARGS ?=
bench-hardening: $(VENV)/.dev
	$(BIN)/python -m bench.hardening all $(BENCH_HARDENING_ARGS)

bench-cold bench-slow bench-idle bench-listing bench-tar: $(VENV)/.dev
	$(BIN)/python -m bench.hardening $(@:bench-%=%) $(BENCH_HARDENING_ARGS)

# The strategy benchmark suite (see bench/README.md): latency, server CPU and copy counts per
# strategy into bench/results/, then report.md and its charts. `bench-quick` is the same
# pipeline on tiny sizes into bench/results/quick/, and `bench-check` validates its artefacts
# (no timing is checked): the smoke test for `make test`. `bench-report` re-renders a report,
# e.g. after `make bench-load` or `make bench-peers` (BENCH_RESULTS=bench/results/quick for
# the quick one).
BENCH_ARGS ?=
BENCH_RESULTS ?= bench/results
.PHONY: bench bench-quick bench-check bench-report

bench: $(VENV)/.dev
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.check bench/results

bench-quick: $(VENV)/.dev
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

bench-check: bench-quick
	$(BIN)/python -m bench.check bench/results/quick

bench-report: $(VENV)/.dev
	$(BIN)/python -m bench.report $(BENCH_RESULTS)
