# contimg: set-up, tests, demo.
#
#   make demo       set up everything, then run a small simulated night end to end
#   make test       set up everything, then ruff, mypy and the default test suite (not slow)
#
# Set-up (shared by every target below, idempotent, a few seconds when done):
#   1. system packages: wsclean, redis-server, casacore-data, and chromium with chromium-driver for the
#      browser tests of the web pages (apt-get, sudo when not root)
#   2. .venv with the package installed editable with its test extra (pip re-runs
#      only when pyproject.toml changes)
#   3. `contimg setup`: offline CASA site config, measures data, casatools, tools
#
# Variables: PYTHON (python3), VENV (.venv), PYTEST_ARGS (extra pytest arguments),
# CONTIMG_TEST_POSTGRES_URL (set automatically when PostgreSQL answers on 127.0.0.1:5432).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
STAMPS := .make-stamps
VPY := $(VENV)/bin/python
APT_PACKAGES := wsclean redis-server casacore-data chromium chromium-driver
PG_TEST_URL := postgresql+psycopg2://postgres@127.0.0.1:5432/test

# Inputs that change what `contimg setup` writes or checks.
SETUP_INPUTS := contimg/casa_env.py contimg/cli/setup.py

.PHONY: help setup system-packages venv demo lint test test-all bench docs clean distclean

help:  ## list the targets
	@echo "make demo       set up, then run 'contimg demo' (a simulated night through the whole chain)"
	@echo "make test       set up, then ruff (pyflakes rules), mypy and the default tests (pytest -m 'not slow'; PYTEST_ARGS=...)"
	@echo "make lint       set up, then ruff and mypy only"
	@echo "make test-all   set up, then run every test, slow ones included"
	@echo "make bench      set up, then run every benchmarks/*.py"
	@echo "make setup      only the set-up: system packages, .venv, 'contimg setup'"
	@echo "make docs       regenerate docs/configuration.md from contimg/config.py"
	@echo "make clean      remove build, test and set-up stamps (keeps .venv and data)"
	@echo "make distclean  clean, and remove .venv"

setup: system-packages $(STAMPS)/casa-setup

# ------------------------------------------------------------------ system packages
# Checked every time (dpkg -s is cheap), so a removed package is noticed.
system-packages:
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
	    dpkg -s "$$pkg" >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if ! command -v $(PYTHON) >/dev/null 2>&1; then \
	    missing="$$missing python3 python3-venv"; \
	elif ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 && [ ! -x $(VPY) ]; then \
	    missing="$$missing python3-venv"; \
	fi; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	echo "set-up: installing system packages:$$missing"; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
	    if [ -n "$${CI:-}" ] || [ ! -t 0 ]; then sudo="sudo -n"; fi; \
	else sudo="none"; fi; \
	if [ "$$sudo" = none ] || ! command -v apt-get >/dev/null 2>&1; then \
	    echo "set-up: cannot run apt-get (need Debian 12 and root or sudo)." >&2; \
	    echo "set-up: install these packages yourself, then rerun make:$$missing" >&2; \
	    exit 1; \
	fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	if ! { $$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends $$missing; }; then \
	    echo "set-up: apt-get failed; install these packages yourself, then rerun make:$$missing" >&2; \
	    exit 1; \
	fi

# ------------------------------------------------------------------ virtual environment
$(VENV)/pyvenv.cfg: | system-packages
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip

# pip runs again only when pyproject.toml changes or the venv was recreated.
$(STAMPS)/pip-install: pyproject.toml $(VENV)/pyvenv.cfg
	@mkdir -p $(STAMPS)
	$(VPY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

venv: $(STAMPS)/pip-install

# ------------------------------------------------------------------ CASA offline
$(STAMPS)/casa-setup: $(STAMPS)/pip-install $(SETUP_INPUTS)
	$(VENV)/bin/contimg setup
	@touch $@

# ------------------------------------------------------------------ use
demo: setup
	$(VENV)/bin/contimg demo

# PostgreSQL tests run when the server answers (or CONTIMG_TEST_POSTGRES_URL is preset).
define PG_ENV
if [ -z "$${CONTIMG_TEST_POSTGRES_URL:-}" ]; then \
    if $(VPY) -c 'import psycopg2; psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=3).close()' >/dev/null 2>&1; then \
        export CONTIMG_TEST_POSTGRES_URL='$(PG_TEST_URL)'; \
        echo "PostgreSQL tests: on ($(PG_TEST_URL))"; \
    else \
        echo "PostgreSQL tests: off (no server accepting postgres@127.0.0.1:5432/test)"; \
    fi; \
else \
    echo "PostgreSQL tests: on (CONTIMG_TEST_POSTGRES_URL preset)"; \
fi
endef

LINT_PATHS := contimg workers beat tests benchmarks docs

lint: setup
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy

test: setup
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy
	@$(PG_ENV); \
	$(VENV)/bin/pytest -m "not slow" --durations=25 $(PYTEST_ARGS)

test-all: setup
	@$(PG_ENV); \
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: setup
	@status=0; \
	shopt -s nullglob; \
	for script in benchmarks/*.py; do \
	    echo "== $$script"; \
	    $(VPY) "$$script" || { echo "FAILED: $$script" >&2; status=1; }; \
	done; \
	exit $$status

docs: $(STAMPS)/pip-install
	$(VPY) docs/gen_config_reference.py > docs/configuration.md

clean:
	rm -rf $(STAMPS) .pytest_cache build dist *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
