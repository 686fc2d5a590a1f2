# The two commands of the README's quick start, and what CI runs.
#   make demo   the demo: PlugStream Cloud and a fleet of stations on loopback (Ctrl-C stops it)
#   make test   the whole test suite; as root it first installs the Debian packages the
#               tests need (tools/test-deps), anyone else is told which are missing
#   make unit   the fast unit tests alone (pytest -m unit), for the edit-test loop
# Both create .venv on first use; nothing is installed by hand.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit test-deps lint bench clean

$(STAMP): pyproject.toml
	PYTHON=$(PYTHON) tools/test-deps --venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/plugstream demo

test-deps:
	PYTHON=$(PYTHON) tools/test-deps

# Four workers on two cores: the suite mostly waits on real processes, sockets and labs.
# A module stays on one worker (its lab or cloud fixture is built once).
test: test-deps $(STAMP)
	$(BIN)/python -m pytest -q -n 4 --dist loadfile

unit: $(STAMP)
	$(BIN)/python -m pytest -q -m unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/ocpp_core.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
