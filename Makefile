# `make demo` (the README's first command: DNC against softmax on real data, ~8 minutes from a fresh clone),
# `make test` (the suite, from a fresh clone), `make results` (RESULTS.md: every table on
# 2 CPU cores in well under an hour, and an hour more for the tuning study's first run),
# `make bench` (the full budget: the GPU recipes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint results bench install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $@

lint: install
	$(PY) -m ruff check src tests benchmarks docs/make_layout.py
	$(PY) -m ruff format --check src tests benchmarks docs/make_layout.py

test: install lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest

demo: install
	PY=$(PY) scripts/demo.sh

results: install
	$(PY) -m benchmarks.run --budget small

bench: install
	$(PY) -m benchmarks.run --budget full

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis src/*.egg-info
