# Two commands for a fresh machine with Python 3.11 (3.12 to 3.14: PYTHON=python3.12) and git:
#   make repro   create .venv from the pinned requirements, run the pipeline, show the metrics
#   make test    the same .venv plus the developer tools, lint, run the test suite
# `make help` lists every target and variable.
PYTHON ?= python3.11
VENV ?= .venv
# TORCH=cpu: torch from PyTorch's CPU-only wheel index (about 190 MB) instead of PyPI's Linux wheel,
# which brings CUDA's libraries (2.9 GB to download instead of 0.35 GB).
# A .venv remembers the choice (.venv/.torch): later commands need no TORCH, and asking for the other
# build is one line instead of nothing happening.
VENV_TORCH := $(shell cat $(VENV)/.torch 2>/dev/null)
TORCH ?= $(VENV_TORCH)
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_VERSION := $(shell sed -n 's/^torch==//p' requirements.txt)
BIN := $(abspath $(VENV))/bin
# Quoted: a path with a space in it is one word to the shell.
PIP := "$(BIN)/python" -m pip install --disable-pip-version-check
# The stages' commands call `python` and `dvc`: the venv's come first on PATH.
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

ifneq ($(filter-out cpu,$(TORCH)),)
$(error TORCH=$(TORCH): the choices are TORCH=cpu (PyTorch's CPU-only build) or no TORCH (PyPI's build, with CUDA on Linux))
endif
ifneq ($(wildcard $(VENV)/.installed),)
ifneq ($(TORCH),$(VENV_TORCH))
$(error TORCH=$(TORCH), but $(VENV) was made $(if $(VENV_TORCH),with TORCH=$(VENV_TORCH),without TORCH=cpu): rm -rf $(VENV) first to switch)
endif
endif

.PHONY: help repro s3 test test-quick lint lock bench container-check verify

help: ## list the targets and variables
	@echo "make TARGET [VARIABLE=value ...]"
	@sed -n 's/^\([a-z0-9-]*\):.*## \(.*\)/  \1\t\2/p' $(MAKEFILE_LIST) | expand -t 20
	@echo "variables: PYTHON=$(PYTHON) (python3.11 to python3.14), VENV=$(VENV), TORCH=cpu (no CUDA libraries)"

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
ifeq ($(TORCH),cpu)
	$(PIP) --index-url $(TORCH_CPU_INDEX) --no-deps torch==$(TORCH_VERSION)
endif
	$(PIP) -r requirements.txt
	echo "$(TORCH)" > $(VENV)/.torch
	touch $@

$(VENV)/.installed-s3: $(VENV)/.installed requirements-s3.txt
	$(PIP) -r requirements-s3.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-s3 requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

repro: $(VENV)/.installed ## create .venv (runtime packages only), run the pipeline, show the metrics and predictions
	dvc repro
	dvc metrics show
	@echo "predictions/high_level.csv, high_level's classes for the rows predict.path names:"
	@cat predictions/high_level.csv

s3: $(VENV)/.installed-s3 ## add DVC's S3 remote (dvc[s3], pinned) to .venv: docs/remote.md

verify: $(VENV)/.installed ## rerun the whole pipeline in a scratch copy; check every output against dvc.lock
	python scripts/verify.py

lint: $(VENV)/.installed-dev ## ruff: lint and format check
	ruff check .
	ruff format --check .

# Every core: each test trains on one thread, as the stages do.
test: lint ## .venv with the developer tools, ruff, then the whole test suite (3 to 8 minutes on 2 cores)
	python -m pytest -n auto --dist worksteal

test-quick: $(VENV)/.installed-dev ## the tests for the edit loop: all but the end-to-end and process-level ones (about 25 s)
	python -m pytest -n auto -m "not slow"

bench: $(VENV)/.installed-dev ## the benchmark (about 6 minutes): prints ratios, writes bench/results.json
	python bench/run.py

container-check: ## the image, built and run for real with podman (as root, on a Debian machine like CI's)
	bash .ci/container-check

lock: ## re-pin requirements.txt, requirements-s3.txt and requirements-dev.txt after a change to requirements*.in
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --disable-pip-version-check -r requirements.in
	{ echo "# Every package make repro installs, pinned: generated from requirements.in by 'make lock'."; \
	  .lock-venv/bin/python -m pip freeze | sed -e 's/^torch==\([^+]*\)+.*/torch==\1/'; } > requirements.txt
	.lock-venv/bin/python -m pip install --disable-pip-version-check -c requirements.txt -r requirements-s3.in
	{ echo "# What make s3 adds to requirements.txt (DVC's S3 remote), pinned: generated from requirements-s3.in by 'make lock'."; \
	  .lock-venv/bin/python -m pip freeze | sed -e 's/^torch==\([^+]*\)+.*/torch==\1/' | grep -vxF -f requirements.txt; } \
	  > requirements-s3.txt
	.lock-venv/bin/python -m pip install --disable-pip-version-check -c requirements.txt -c requirements-s3.txt -r requirements-dev.in
	{ echo "# What make test adds to requirements.txt and requirements-s3.txt, pinned: generated from requirements-dev.in by 'make lock'."; \
	  .lock-venv/bin/python -m pip freeze | sed -e 's/^torch==\([^+]*\)+.*/torch==\1/' | grep -vxF -f requirements.txt \
	  | grep -vxF -f requirements-s3.txt; } > requirements-dev.txt
	rm -rf .lock-venv
