# farmsync: `make demo` runs the main job on the embedded store; `make test` runs the whole suite.
# Both set up .venv first (only when the requirements changed), so a fresh clone needs nothing else.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

PYTHON ?= python3
VENV := .venv
# This machine image's pip config names local indexes that may be absent; pip warns per package. Keep the
# output readable without hiding pip's exit status (pipefail).
QUIET_PIP := 2>&1 | { grep -v "WARNING: Location 'file:" || true; }
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup setup-printers lint fmt test test-fast demo bench clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt $(QUIET_PIP)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e . $(QUIET_PIP)
	touch $(STAMP)

# Real OctoPrint and PrusaLink 0.8 live in their own virtualenvs (their pins clash with ours).
setup-printers: setup
	bash tests/printers/setup_venvs.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The Firestore emulator is started on a free loopback port unless FIRESTORE_EMULATOR_HOST is set.
test: lint setup-printers
	$(BIN)/python -m tests.emulator -- $(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -m "not printers" $(PYTEST_ARGS)

demo: setup
	$(BIN)/farmsync demo $(DEMO_ARGS)

bench: setup setup-printers
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .printer-venvs .pytest_cache .ruff_cache build shared/*.egg-info
