# Two commands do everything on a fresh machine with Python 3.11:
#   make demo   set up .venv, then a small k-step sweep + EMA-vs-predictor study on the built-in
#               synthetic data (no download), its figures and a report (~5 min on 2 cores)
#   make test   set up .venv and run the test suite, in parallel (pytest-xdist: one worker per core, each
#               taking whole test files, so a module's shared fixtures are built once; the longest files
#               first, as tests/conftest.py orders them)
# Also: make demo-run (one SimSiam run on synthetic data, ~4.5 min), make bench.
# The venv gets the package with its test extra (.[dev]); `make bench` adds .[bench]
# (kornia, lightly: the comparison benchmarks only, no test imports them).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo demo-run test test-slow bench venv clean

# pip byte-compiles the installed files one after the other (two thirds of its CPU time here); the
# venv is compiled on every core instead, without the packages' own test folders (pandas', sympy's,
# numpy's...: 2,600 of 9,300 files, never imported). Files this Python cannot compile are skipped,
# as pip skips them.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q 'pip>=21.3'  # editable installs from pyproject.toml (PEP 660); no upgrade when met
	$(PY) -m pip install -q --no-compile -e '.[dev]'
	$(PY) -c 'import compileall, re, sys; compileall.compile_dir(sys.argv[1], quiet=2, workers=0, rx=re.compile(r"/tests?/"))' $(VENV)/lib
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m experiments.demo --out runs/demo

demo-run: $(STAMP)
	$(PY) -m emsiam train --config demo name=demo-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(BENCH_STAMP)
	$(PY) benchmarks/throughput.py --preset cpu

clean:
	rm -rf $(VENV) .pytest_cache
