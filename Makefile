# The two commands of the README: `make run` and `make test`. Both create .venv and install.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/ledger serve --demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

# The fast benches (about 6 minutes); the slow ones (bench.rebuild, bench.scale) are in bench/README.md.
bench: $(STAMP)
	$(BIN)/python -m bench.write_path --callers 16
	$(BIN)/python -m bench.projection_catchup
	$(BIN)/python -m bench.read_your_writes
	$(BIN)/python -m bench.http_load

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
