# farmsync: `make demo` runs the main job on the embedded store; `make test` runs the whole suite.
# Both set up .venv first (only when the requirements changed), so a fresh clone needs nothing else.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup setup-system setup-printers lint typecheck fmt test test-fast demo bench clean

setup: $(STAMP)

# pip's own output goes to .venv/pip.log; the terminal shows each package as pip collects it, then pip's summary.
# Then farmsync itself and shared/farmsync_sim (the simulator and the demo: a distribution of its own, which the
# product never ships), both editable.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml shared/farmsync_sim/pyproject.toml
	@echo "setup: Python packages into .venv (first run: about 2 minutes)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --disable-pip-version-check --progress-bar off -r requirements-dev.txt 2>&1 \
	  | tee $(VENV)/pip.log | { grep --line-buffered -E '^(Collecting|ERROR)' \
	  | sed -u -E 's/^Collecting ([^ ]+).*/  collecting \1/; s/^ERROR/  ERROR/' || true; }
	@$(BIN)/pip install --disable-pip-version-check --no-deps -e . -e shared/farmsync_sim >>$(VENV)/pip.log 2>&1 \
	  || { tail -n 20 $(VENV)/pip.log; echo "setup: installing farmsync and farmsync_sim failed (log: .venv/pip.log)"; exit 1; }
	@echo "setup: .venv is ready (pip's full log: .venv/pip.log)"
	@touch $(STAMP)

# Debian packages the suite needs (nginx, Chromium, shellcheck, systemd-analyze, curl, Java for the Firestore
# emulator): installed when missing, loudly refused when they can't be. List: tests/system/debian-packages.txt.
setup-system:
	@bash tests/system/setup.sh

# Real OctoPrint and PrusaLink 0.8 live in their own virtualenvs (their pins clash with ours).
setup-printers: setup
	@bash tests/printers/setup_venvs.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy, strict on the library (settings in pyproject.toml's [tool.mypy]).
typecheck: setup
	$(BIN)/mypy

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The Firestore emulator is started on a free loopback port unless FIRESTORE_EMULATOR_HOST is set.
test: setup-system lint typecheck setup-printers
	$(BIN)/python -m tests.emulator -- $(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -m "not printers" $(PYTEST_ARGS)

demo: setup
	$(BIN)/farmsync demo $(DEMO_ARGS)

bench: setup-system setup setup-printers
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .printer-venvs .pytest_cache .ruff_cache .mypy_cache build shared/*.egg-info shared/farmsync_sim/*.egg-info
