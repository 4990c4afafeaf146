# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch is pinned for dev and CI; a looser pin pulls a multi-GB CUDA build. constraints.txt pins
# the rest to a set known to resolve, so a fresh install neither backtracks nor builds old sdists.
TORCH_PIN ?= torch==2.13.0

.PHONY: install install-dev demo test test-fast clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# the demo targets a microcontroller, so it installs TFLite Micro (and litert-torch, its converter) beside the core
# each install leaves a stamp, so a second `make test` starts at once; editing pyproject or constraints reinstalls
install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt "$(TORCH_PIN)" -e ".[tflm]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt "$(TORCH_PIN)" -e ".[dev,timeseries,tabular,text,edge,tune,tracking]"
	touch $@ $(VENV)/.installed

demo: install
	$(BIN)/edgedistill run --out runs/demo --overwrite --seeds 3

# the suite is mostly CLI subprocesses (interpreter start-up dominates), so one worker per core nearly halves it
test: install-dev
	$(BIN)/python -m pytest -n auto

# while editing: every module's logic without the end-to-end runs and subprocesses (tests/conftest.py marks those slow)
test-fast: install-dev
	$(BIN)/python -m pytest -n auto -m "not slow" -q

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
