# Two commands do everything on a fresh machine with Python 3.11:
#   make demo   set up .venv and train + evaluate SimSiam on the built-in synthetic data
#               (no download; ~4.5 min on 2 cores)
#   make demo-studies  a small k-step sweep + EMA-vs-predictor study, figures and a report
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-studies test test-slow bench venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m emsiam train --config demo name=demo-$$(date +%Y%m%d-%H%M%S)

demo-studies: $(STAMP)
	$(PY) -m experiments.demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/throughput.py --preset cpu

clean:
	rm -rf $(VENV) .pytest_cache
