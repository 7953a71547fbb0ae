# Every target runs in the Python environment you work in — the `python` on your PATH: activate
# your virtual environment or conda environment first (see the README's Quick start).
PYTHON ?= python
CODE := src tests benchmarks scripts train.py eval.py predict.py export.py

.PHONY: install train test test-slow test-all lint typecheck check format clean bench services services-stop

# cnnzoo (editable), every optional extra (W&B, TensorBoard, Optuna, submitit, ONNX) and the tools
install:
	$(PYTHON) -m pip install -e ".[dev]"

train:
	$(PYTHON) train.py $(ARGS)

# the default suite (a few minutes on 2 CPU cores), on every core
test:
	$(PYTHON) -m pytest -n auto

# the tests marked `slow`: ImageNet-size nets, long runs, more processes
test-slow:
	$(PYTHON) -m pytest -n auto -m slow

test-all:
	$(PYTHON) -m pytest -n auto -m ""

# the SLURM cluster and PostgreSQL server of the `services` tests, on this machine (root):
# `eval "$$(make -s services)"` exports where they are, then `make test` runs those tests too
services:
	@scripts/services/up.sh

services-stop:
	-scripts/services/slurm.sh stop
	-[ ! -x scripts/services/postgres.sh ] || scripts/services/postgres.sh stop

lint:
	$(PYTHON) -m ruff check $(CODE)
	$(PYTHON) -m ruff format --check $(CODE)

typecheck:
	$(PYTHON) -m mypy

check: lint typecheck

format:
	$(PYTHON) -m ruff check --fix $(CODE)
	$(PYTHON) -m ruff format $(CODE)

# speed against a plain PyTorch loop (minutes; not part of `make test`): see README, Benchmarks
bench:
	OMP_NUM_THREADS=1 $(PYTHON) -m benchmarks $(ARGS)

clean:
	rm -rf logs/train logs/eval logs/debug .pytest_cache .mypy_cache build dist
