# The two commands of the README. Each sets up everything it needs on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test system-deps install up down clean-state lint

demo: system-deps install
	$(BIN)/tongguan demo

# Two or more pytest workers (tests/conftest.py caps the count): most of the suite waits on the
# services (group rejoins, session timeouts, a stream to drain), so two workers halve the time even
# on two cores. Each worker starts services of its own. PYTEST_ARGS=-n0 runs in one process.
test: system-deps install
	$(BIN)/pytest -n auto --dist worksteal $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tongguan needs Python >= 3.11 (found " + sys.version.split()[0] + ")")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

system-deps:
	@scripts/system-deps.sh

up: install
	$(BIN)/tongguan up

down:
	$(BIN)/tongguan down

lint: install
	$(BIN)/pip install -q 'ruff>=0.5,<1' && $(BIN)/ruff check .

clean-state: down
	rm -rf .tongguan
