# Every target runs in one Python environment:
# - PYTHON=<python>, when given (`make train PYTHON=~/envs/zoo/bin/python`);
# - else the active virtual environment ($VIRTUAL_ENV) or conda environment ($CONDA_PREFIX);
# - else .venv in the checkout, created with $(BASE_PYTHON) on first use.
# cnnzoo (editable, every extra and the test tools: `make install`) is installed into it before
# the first target that needs it: .venv once (stamped; again when pyproject.toml changes), an
# environment of your own when this checkout's cnnzoo or the test tools are not there yet.
BASE_PYTHON ?= python3
ifneq ($(origin PYTHON),undefined)
else ifneq ($(VIRTUAL_ENV),)
  PYTHON := $(VIRTUAL_ENV)/bin/python
else ifneq ($(CONDA_PREFIX),)
  PYTHON := $(CONDA_PREFIX)/bin/python
else
  VENV := .venv
  PYTHON := $(VENV)/bin/python
endif
CODE := src tests benchmarks scripts train.py eval.py predict.py export.py

.PHONY: install ready train test test-slow test-all lint typecheck check format clean bench services services-stop

# cnnzoo (editable), every optional extra (W&B, TensorBoard, Optuna, submitit, ONNX) and the tools
install:
ifdef VENV
	test -x $(VENV)/bin/pip || $(BASE_PYTHON) -m venv $(VENV)
endif
	$(PYTHON) -m pip install -e ".[dev]"
ifdef VENV
	touch $(VENV)/.cnnzoo-installed
endif

ifdef VENV
READY := $(VENV)/.cnnzoo-installed
$(READY): pyproject.toml
	@echo "No Python environment is active: installing cnnzoo into $(VENV) (its first use, or pyproject.toml changed)"
	@$(MAKE) --no-print-directory install
else
READY := ready
# this checkout's cnnzoo and pytest importable (find_spec imports neither)
IS_READY := import importlib.util as u, os, sys; s = u.find_spec("cnnzoo"); \
	src = os.path.realpath("src") + os.sep; \
	sys.exit(not (s and s.origin and os.path.realpath(s.origin).startswith(src) \
	and u.find_spec("pytest") and u.find_spec("xdist")))
ready:
	@$(PYTHON) -c '$(IS_READY)' || { \
		echo "This checkout's cnnzoo is not installed for $(PYTHON): installing it"; \
		$(MAKE) --no-print-directory install; }
endif

train: $(READY)
	$(PYTHON) train.py $(ARGS)

# the default suite (a few minutes on 2 CPU cores), on every core
test: $(READY)
	$(PYTHON) -m pytest -n auto

# the tests marked `slow`: ImageNet-size nets, long runs, more processes
test-slow: $(READY)
	$(PYTHON) -m pytest -n auto -m slow

test-all: $(READY)
	$(PYTHON) -m pytest -n auto -m ""

# the SLURM cluster and PostgreSQL server of the `services` tests, on this machine (root):
# `eval "$$(make -s services)"` exports where they are, then `make test` runs those tests too
services:
	@scripts/services/up.sh

services-stop:
	-scripts/services/slurm.sh stop
	-[ ! -x scripts/services/postgres.sh ] || scripts/services/postgres.sh stop

lint: $(READY)
	$(PYTHON) -m ruff check $(CODE)
	$(PYTHON) -m ruff format --check $(CODE)

typecheck: $(READY)
	$(PYTHON) -m mypy

check: lint typecheck

format: $(READY)
	$(PYTHON) -m ruff check --fix $(CODE)
	$(PYTHON) -m ruff format $(CODE)

# speed against a plain PyTorch loop (minutes; not part of `make test`): see README, Benchmarks
bench: $(READY)
	OMP_NUM_THREADS=1 $(PYTHON) -m benchmarks $(ARGS)

clean:
	rm -rf logs/train logs/eval logs/debug .pytest_cache .mypy_cache build dist
