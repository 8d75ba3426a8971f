# Two commands for a fresh machine with Python 3.11 and git:
#   make repro   create .venv from the pinned requirements, run the pipeline, show the metrics
#   make test    create .venv from the pinned requirements, lint, run the test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# The stages' commands call `python` and `dvc`: the venv's come first on PATH.
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: repro test lint lock container-check

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements.txt
	touch $@

repro: $(VENV)/.installed
	dvc repro
	dvc metrics show

lint: $(VENV)/.installed
	ruff check .
	ruff format --check .

test: lint
	python -m pytest

# The image, built and run for real with podman (as root, on a Debian machine like CI's).
container-check:
	bash .ci/container-check

# Re-pin every package after a change to requirements.in.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --disable-pip-version-check -r requirements.in
	{ echo "# Every package of the environment, pinned: generated from requirements.in by 'make lock'."; \
	  .lock-venv/bin/python -m pip freeze | sed -e 's/^torch==\([^+]*\)+.*/torch==\1/'; } > requirements.txt
	rm -rf .lock-venv
