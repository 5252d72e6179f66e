# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config.example.toml

.PHONY: run test test-slow bench lint fmt lock clean

$(BIN)/archiver: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

## run: start the archiver on config.example.toml (SQLite catalog, local store under ./var/)
run: $(BIN)/archiver
	$(BIN)/archiver --config $(CONFIG) run

## test: run the test suite (starts its own throw-away PostgreSQL)
test: $(BIN)/archiver
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## test-slow: the long-running suites
test-slow: $(BIN)/archiver
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

## bench: the benchmarks (benchmarks/README.md); QUICK=1 for the < 1 minute sizes
bench: $(BIN)/archiver
	$(BIN)/python -m benchmarks.run $(if $(QUICK),--quick)

## lint: ruff and mypy (strict on archiver/ and connectors/)
lint: $(BIN)/archiver
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(BIN)/archiver
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## lock: regenerate requirements.lock (hashes) from pyproject.toml; needs uv
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
