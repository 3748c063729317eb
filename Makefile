PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,postgres,metrics,otel

.PHONY: install test test-long lint bench demo docs clean

install: $(BIN)/trioqueue

$(BIN)/trioqueue: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	@touch $@

test: install
	$(BIN)/python -m pytest -q

test-long: install
	TRIOQUEUE_LONG=1 $(BIN)/python -m pytest -q -m "slow or not slow"

lint: install
	$(BIN)/ruff check trioqueue tests benchmarks examples
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/run.py

demo: install
	$(BIN)/python examples/hash_files.py

docs: install
	$(BIN)/python -c "import trioqueue, pydoc; pydoc.writedoc(trioqueue)" >/dev/null && echo "docs: see docs/*.md (API reference in docstrings)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
