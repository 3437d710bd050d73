# Two commands for a fresh machine:  `make demo`  and  `make test`.
# Each creates the virtual environment in .venv if it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-hf-floor lint setup

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,hf,track]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/coconutblt demo $(ARGS)

# The full suite, then the hf tests on the oldest transformers/peft pyproject allows.
# With ARGS (a chosen subset) only the main suite runs.
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q $(ARGS)
ifeq ($(strip $(ARGS)),)
	$(MAKE) --no-print-directory test-hf-floor
endif

# The floor of the hf extra: keep these equal to its lower bounds in pyproject.toml.
FLOOR_VENV ?= .venv-hf-floor
HF_FLOOR := transformers==4.46.2 peft==0.15.2

$(FLOOR_VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/pip install -q --upgrade pip
	$(FLOOR_VENV)/bin/pip install -q torch==2.13.0
	$(FLOOR_VENV)/bin/pip install -q -e '.[dev,hf,track]' $(HF_FLOOR)
	touch $@

test-hf-floor: $(FLOOR_VENV)/.installed
	$(FLOOR_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_hf_*.py

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
