# `make train` and `make test` set up .venv themselves the first time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install train test test-all lint format clean bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

train: install
	$(BIN)/python train.py $(ARGS)

# speed against a plain PyTorch loop (minutes; not part of `make test`): see README, Benchmarks
bench: install
	OMP_NUM_THREADS=1 $(BIN)/python -m benchmarks $(ARGS)

test: install
	$(BIN)/pytest -q

test-all: install
	$(BIN)/pytest -q -m ""

lint: install
	$(BIN)/ruff check src tests benchmarks scripts train.py eval.py predict.py export.py

format: install
	$(BIN)/ruff format src tests benchmarks scripts train.py eval.py predict.py export.py

clean:
	rm -rf logs/train logs/eval logs/debug .pytest_cache
