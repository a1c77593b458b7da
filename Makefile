# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint types unit bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## make demo: the gateway on SQLite with the local sandbox provider and demo data
demo: $(STAMP)
	$(BIN)/linkgate demo

## make test: ruff, mypy and the whole pytest suite on SQLite and PostgreSQL
test: $(STAMP) lint types unit

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

types: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

## make bench: every benchmark, then one table (var/bench/report.md); about 10 min here
bench: $(STAMP)
	$(BIN)/python tests/benchmarks/report.py --run

## make bench-quick: the same with smaller sizes (about 3 min; noisier, not for publishing)
bench-quick: $(STAMP)
	$(BIN)/python tests/benchmarks/report.py --run --quick

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
