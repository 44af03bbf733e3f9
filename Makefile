# medran: `make help` lists the targets. Everything runs inside the project's own .venv.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE ?= 1

.DEFAULT_GOAL := help
.PHONY: help install repro test test-fast lint format lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed ## Create .venv and install the exact locked versions

repro: install ## Run the whole pipeline (dvc repro) on the embedded synthetic default
	dvc repro
	@echo "Results: reports/ (dvc metrics show), data quality: reports/data_quality/"

test: install ## Run all test tiers (unit, integration, pipeline)
	pytest

test-fast: install ## Run the unit and integration tiers only
	pytest -m "not slow"

lint: install ## Check style with ruff
	ruff check . && ruff format --check .

format: install ## Format and fix with ruff
	ruff format . && ruff check --fix .

lock: | $(BIN)/python ## Re-resolve dependencies from pyproject.toml into requirements.lock
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip freeze --exclude-editable > requirements.lock

clean: ## Remove the virtual environment and caches (not DVC data)
	rm -rf $(VENV) .pytest_cache .ruff_cache
