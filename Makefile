# Two commands matter: `make test` (the suite, from a fresh clone) and
# `python benchmarks/head_overhead.py` (the cost figures of the README).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test lint bench install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $@

lint: install
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

test: install lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest

bench: install
	$(PY) benchmarks/head_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis src/*.egg-info
