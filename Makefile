# The README's two commands:  make book  (build the website)  and  make test  (run every test).
# Both set themselves up: they use the active virtual environment, or create .venv, and
# install requirements.txt plus this package (editable) into it when either file changes.

SHELL := /bin/bash
PYTHON ?= python3
VENV := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vae-tutorial-installed
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/sanitize.cfg
# TEST_WORKERS=2 runs the tests in two processes (pytest-xdist; each file whole, in order,
# in one process); CI does that with one thread each, under another float configuration
TEST_WORKERS ?= 1
WORKERS := $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile,)

.PHONY: book test portable floor setup lint format bench clean

book: setup
	$(PY) tools/sync_colab.py
	rm -rf _build/html
	$(VENV)/bin/jupyter-book build . --warningiserror --nitpick --keep-going

test: book
	$(PY) -m pytest tests notebooks $(NBVAL) $(WORKERS) --durations=0 -q

# the chapters and numeric tests under other float configurations (see book/maintainers.md)
portable: setup
	$(PY) tools/portable.py

# the oldest Python, torch and torchvision that pyproject.toml claims, in a throwaway
# environment (the rest as pip resolves it), running the unit tests (tools/floor.sh)
floor:
	bash tools/floor.sh

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt -e .
	touch $@

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf _build .cache runs
