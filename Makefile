# trioqueue: every target works on a fresh clone (it makes .venv first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,postgres,metrics,otel,web
STAMP := $(VENV)/.installed

.PHONY: install test test-quick test-long lint bench bench-compare demo docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	@touch $@

## The test suite (SQLite files and the PostgreSQL server at 127.0.0.1:5432).
test: install
	$(BIN)/python -m pytest -q

## The edit loop: the tests that take under about a second each.
test-quick: install
	$(BIN)/python -m pytest -q -m "not slow and not seconds"

## Big Hypothesis budgets and many crash rounds.
test-long: install
	TRIOQUEUE_LONG=1 $(BIN)/python -m pytest -q -m "slow or not slow" -o timeout=3000

lint: install
	$(BIN)/ruff check trioqueue tests benchmarks examples
	$(BIN)/ruff format --check trioqueue benchmarks examples
	$(BIN)/mypy

## Throughput figures, one JSON line each.
bench: install
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_layers.py
	$(BIN)/python benchmarks/bench_sqlite.py
	$(BIN)/python benchmarks/bench_postgres.py

## trioqueue against pgqueuer and raw SQL on the same server, with ratios (about 13 min;
## COMPARE_ARGS="--quick --rounds 1" for a short run). Its own venv: pgqueuer is no dependency.
bench-compare:
	@test -x .venv-bench/bin/python || { $(PY) -m venv .venv-bench && echo '*' > .venv-bench/.gitignore; }
	@if [ ! -f .venv-bench/.installed ] || [ pyproject.toml -nt .venv-bench/.installed ] \
	    || [ benchmarks/requirements-compare.txt -nt .venv-bench/.installed ]; then \
	  .venv-bench/bin/python -m pip install -q --upgrade pip && \
	  .venv-bench/bin/python -m pip install -q -r benchmarks/requirements-compare.txt -e ".[postgres]" && \
	  touch .venv-bench/.installed; fi
	.venv-bench/bin/python benchmarks/compare.py $(COMPARE_ARGS)

## Hash a few thousand files through SQLite with `trioqueue worker --burst`.
demo: install
	$(BIN)/python examples/hash_files.py

## Check the docs' links and that every public name has a docstring.
docs: install
	$(BIN)/python docs/check.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
