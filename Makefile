# lrlab: every target sets up .venv itself (from constraints.txt) when it is missing or out of date.
#
# The Pythons the course supports (pyproject.toml's requires-python; tests/test_repo.py checks they agree).
# .venv is made with PYTHON when you give one (`PYTHON=python3.12 make test`; anything else is refused), else with
# the first supported one of: python3 (the one you run anyway; 3.11 on the course machines), then python3.13,
# python3.12, python3.11, newest first, since the newest has the longest support left and is the likeliest to sit
# beside a python3 that is too new. Each is tried by running it: a pyenv shim can exist and still not run.
SUPPORTED_PYTHONS := 3.11 3.12 3.13
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.lrlab-installed
JOBS   ?= 2
DEVICE ?= auto
PORT   ?= 8888
HUB_PORT ?= 8000
HUB_EXCHANGE ?= /srv/nbgrader/exchange

.PHONY: help run test lab hub bench release validate lint clean

PY_VERSION = $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2> /dev/null
SUPPORTED_RANGE = Python $(firstword $(SUPPORTED_PYTHONS)) to $(lastword $(SUPPORTED_PYTHONS))
ifneq ($(filter environment command,$(firstword $(origin PYTHON))),)
PYTHON_CANDIDATES := $(PYTHON)
# An explicit PYTHON is checked at once (targets that need no Python aside), even when .venv is already there.
ifneq ($(filter-out help clean,$(or $(MAKECMDGOALS),help)),)
PYTHON_IS := $(shell $(call PY_VERSION,$(PYTHON)))
ifeq ($(PYTHON_IS),)
$(error PYTHON=$(PYTHON) does not run a Python here. The course supports $(SUPPORTED_RANGE): install one and name it, e.g. PYTHON=python3.12)
endif
ifeq ($(filter $(PYTHON_IS),$(SUPPORTED_PYTHONS)),)
$(error PYTHON=$(PYTHON) is Python $(PYTHON_IS). The course supports $(SUPPORTED_RANGE): install one and name it, e.g. PYTHON=python3.12)
endif
VENV_IS := $(shell test -x $(VENV)/bin/python && $(call PY_VERSION,$(VENV)/bin/python))
ifneq ($(VENV_IS),)
ifneq ($(VENV_IS),$(PYTHON_IS))
$(error $(VENV)/ was made with Python $(VENV_IS), but PYTHON=$(PYTHON) is Python $(PYTHON_IS): remove $(VENV)/ (rm -rf $(VENV)) and make rebuilds it with $(PYTHON))
endif
endif
endif
else
PYTHON_CANDIDATES := python3 python3.13 python3.12 python3.11
endif

help:
	@echo "make run      regenerate release/, execute every notebook headless, print a table"
	@echo "make test     run the whole test suite"
	@echo "make lab      start JupyterLab on the course (nbgrader extensions on)"
	@echo "make hub      start the class's JupyterHub on 127.0.0.1:$(HUB_PORT) (as root; README: Teaching a class)"
	@echo "make bench    print the speed and memory ratios the course promises"
	@echo "make release  regenerate release/ from source/"
	@echo "make validate source notebooks pass, release notebooks fail as expected"
	@echo "make lint     ruff on the package, tests and notebooks"

$(STAMP): constraints.txt pyproject.toml
	@if ! command -v bwrap > /dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		echo "Installing Debian's bubblewrap (the sandbox lrlab grade runs submissions in)..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap > /dev/null; fi
	@test -x $(BIN)/python || { \
		for py in $(PYTHON_CANDIDATES); do \
			v=$$($(call PY_VERSION,$$py)); \
			case " $(SUPPORTED_PYTHONS) " in *" $$v "*) [ -n "$$v" ] && break;; esac; \
			if [ -n "$$v" ]; then tried="$$tried $$py (Python $$v),"; else tried="$$tried $$py (does not run),"; fi; py=; \
		done; \
		if [ -z "$$py" ]; then \
			echo "No supported Python found: the course supports $(SUPPORTED_RANGE). Tried:$${tried%,}." >&2; \
			echo "Install one of them, or name one: PYTHON=/path/to/python3.12 make ..." >&2; exit 1; fi; \
		echo "Creating $(VENV) with $$py (Python $$v)"; $$py -m venv $(VENV); }
	@echo "Installing the course environment into $(VENV) from constraints.txt (about a minute)..."
	@$(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt -e '.[dev,hub]' > $(VENV)/install.log 2>&1 \
		|| { grep -v "is ignored: it is neither a file nor a directory" $(VENV)/install.log; exit 1; }
	$(BIN)/python -c "import lrlab, torch, nbgrader, papermill"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/lrlab release
	$(BIN)/lrlab run --device $(DEVICE) --jobs $(JOBS)

# Tests run in parallel worker processes (pytest-xdist); the browser tests stay together in one worker.
# PYTEST_ARGS adds pytest arguments, e.g. PYTEST_ARGS='-m "not browser"' or a list of test files.
TEST_JOBS ?= auto
PYTEST_ARGS ?=
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadgroup $(PYTEST_ARGS)

lab: $(STAMP)
	$(BIN)/jupyter lab --no-browser --port $(PORT) $(if $(filter 0,$(shell id -u)),--allow-root,)

# A class on one machine: JupyterHub (as root) with nbgrader's exchange in HUB_EXCHANGE; Ctrl-C stops everything.
# The proxy, configurable-http-proxy, is installed from npm into build/hub/node/ on the first start.
hub: $(STAMP)
	$(BIN)/python deploy/jupyterhub/start.py --port $(HUB_PORT) --exchange $(HUB_EXCHANGE)

# The peers the benchmarks compare with (BackPACK, Opacus) are installed for make bench only: the `bench` extra.
BENCH_STAMP := $(VENV)/.lrlab-bench-installed
$(BENCH_STAMP): $(STAMP)
	@echo "Installing the benchmark peers (pyproject's bench extra) into $(VENV) from constraints.txt..."
	@$(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt -e '.[dev,hub,bench]' \
		> $(VENV)/install-bench.log 2>&1 || { cat $(VENV)/install-bench.log; exit 1; }
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks

release: $(STAMP)
	$(BIN)/lrlab release

validate: $(STAMP)
	$(BIN)/lrlab validate

lint: $(STAMP)
	$(BIN)/ruff check utils tests benchmarks

clean:
	rm -rf build .pytest_cache
