# lrlab: every target sets up .venv itself (from constraints.txt) when it is missing or out of date.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.lrlab-installed
JOBS   ?= 2
DEVICE ?= auto
PORT   ?= 8888

.PHONY: help run test lab bench release validate lint clean

help:
	@echo "make run      regenerate release/, execute every notebook headless, print a table"
	@echo "make test     run the whole test suite"
	@echo "make lab      start JupyterLab on the course (nbgrader extensions on)"
	@echo "make bench    print the speed and memory ratios the course promises"
	@echo "make release  regenerate release/ from source/"
	@echo "make validate source notebooks pass, release notebooks fail as expected"
	@echo "make lint     ruff on the package, tests and notebooks"

$(STAMP): constraints.txt pyproject.toml
	@if ! command -v bwrap > /dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		echo "Installing Debian's bubblewrap (the sandbox lrlab grade runs submissions in)..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap > /dev/null; fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing the course environment into $(VENV) from constraints.txt (about a minute)..."
	@$(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt -e '.[dev]' > $(VENV)/install.log 2>&1 \
		|| { grep -v "is ignored: it is neither a file nor a directory" $(VENV)/install.log; exit 1; }
	$(BIN)/python -c "import lrlab, torch, nbgrader, papermill"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/lrlab release
	$(BIN)/lrlab run --device $(DEVICE) --jobs $(JOBS)

# Tests run in parallel worker processes (pytest-xdist); the browser tests stay together in one worker.
TEST_JOBS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadgroup

lab: $(STAMP)
	$(BIN)/jupyter lab --no-browser --port $(PORT) $(if $(filter 0,$(shell id -u)),--allow-root,)

bench: $(STAMP)
	$(BIN)/python -m benchmarks

release: $(STAMP)
	$(BIN)/lrlab release

validate: $(STAMP)
	$(BIN)/lrlab validate

lint: $(STAMP)
	$(BIN)/ruff check utils tests benchmarks

clean:
	rm -rf build .pytest_cache
