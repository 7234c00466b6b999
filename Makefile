# `make demo` (the README's first command: DNC against softmax on real data, ~5 minutes),
# `make test` (the suite, from a fresh clone), `make bench` (the README's figures).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench install clean

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

demo: install
	PY=$(PY) scripts/demo.sh

bench: install
	$(PY) benchmarks/head_overhead.py
	$(PY) benchmarks/fashion_mnist_compare.py
	$(PY) benchmarks/fashion_mnist_ablation.py
	$(PY) benchmarks/fashion_mnist_snap.py
	$(PY) benchmarks/segmentation_overhead.py
	$(PY) benchmarks/segmentation_compare.py
	$(PY) benchmarks/openset.py
	$(PY) benchmarks/new_classes.py
	$(PY) benchmarks/sklearn_compare.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis src/*.egg-info
