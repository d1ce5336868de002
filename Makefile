# open_grpo. Quickstart on a fresh clone: `make demo`, then `make test`.
#   make train RECIPE=qwen-math-1.5b [ACCELERATE=zero3] [NUM_GPUS=n] [ARGS="--key value"]
#   RECIPE is a name under recipes/ or a path to a recipe YAML.
SHELL := /bin/bash
.DEFAULT_GOAL := help

RECIPE ?= qwen-math-1.5b
ACCELERATE ?= zero3
ARGS ?=
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
RECIPE_FILE = $(if $(wildcard $(RECIPE)),$(RECIPE),recipes/$(RECIPE).yaml)
# CPU builds here and in CI; on GPU machines install the `gpu` extra instead (see README).
TORCH_CPU ?= torch==2.13.0
GPUS_FOUND = $(shell nvidia-smi -L 2>/dev/null | grep -c '^GPU')
NUM_GPUS ?= $(GPUS_FOUND)

.PHONY: help env demo test lint format train check bench clean

help:
	@echo "make demo     - tiny GRPO run on CPU, no hub (the embedded default)"
	@echo "make test     - the test suite (what CI runs)"
	@echo "make train RECIPE=qwen-math-1.5b [ACCELERATE=zero3] [NUM_GPUS=n] [ARGS='--key value']"
	@echo "make check RECIPE=... - preflight: layout, batch arithmetic, memory plan (no GPU needed)"
	@echo "make lint / make format"

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_CPU)
	$(PY) -m pip install -q -e ".[test]"
	@touch $@

env: $(VENV)/.installed

demo: env
	HF_HUB_OFFLINE=1 $(PY) -m open_grpo.train --config recipes/demo.yaml $(ARGS)

test: env
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: env
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# train/check/bench use the GPU install in $(VENV) (README: "On GPUs"); they never build a CPU one.
$(BIN)/open-grpo:
	@echo "No $(BIN)/open-grpo: install first (GPU: python -m venv $(VENV) && $(BIN)/pip install -e '.[gpu]')"; exit 2

train: $(BIN)/open-grpo
	@if [ "$(NUM_GPUS)" = "0" ] || [ -z "$(NUM_GPUS)" ]; then \
	  echo "No GPU found (NUM_GPUS=0). On a CPU-only machine run 'make demo'; or set NUM_GPUS=n."; exit 1; fi
	$(BIN)/open-grpo check "$(RECIPE_FILE)" --gpus-per-node $(NUM_GPUS) --accelerate $(ACCELERATE) $(ARGS)
	$(BIN)/accelerate launch --config_file accelerate_configs/$(ACCELERATE).yaml --num_processes $(NUM_GPUS) -m open_grpo.train --config "$(RECIPE_FILE)" $(ARGS)

check: $(BIN)/open-grpo
	$(BIN)/open-grpo check "$(RECIPE_FILE)" $(if $(filter-out 0,$(NUM_GPUS)),--gpus-per-node $(NUM_GPUS)) --accelerate $(ACCELERATE) $(ARGS)

bench: $(BIN)/open-grpo
	$(BIN)/open-grpo bench $(ARGS)

clean:
	rm -rf outputs .pytest_cache .ruff_cache
