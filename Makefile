# Two commands from a clean clone: `make bench` (set-up + the main job) and `make test` (set-up + lint + tests).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
OUT    ?= out/bench

.PHONY: setup test lint bench benchmark-optimizer clean

setup: $(STAMP)

# PyTorch first: on a machine without a CUDA GPU take a CPU build when one is reachable (a local
# find-links folder or a CPU index configured for pip), because a plain `torch` requirement pulls
# a multi-GB CUDA build there. Machines with a GPU, or without a CPU build at hand, get pip's usual torch.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@if ! $(PY) -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install -q torch; \
	  else $(PIP) install -q "torch==2.13.0+cpu" || $(PIP) install -q torch; fi; \
	fi
	$(PIP) install -q -e ".[bench,llm,diffusion,dev,eval]"
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

test: $(STAMP) lint
	$(PY) -m pytest

bench: $(STAMP)
	$(VENV)/bin/dualoptim bench --out $(OUT)

benchmark-optimizer: $(STAMP)
	$(PY) benchmarks/optimizer_step.py --out benchmarks/results/optimizer_step.json

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
