# medran: `make help` lists the targets. Everything runs inside the project's own .venv.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE ?= 1

.DEFAULT_GOAL := help
.PHONY: help install repro benchmark benchmark-ci benchmark-gpu test test-fast ui browser js plots lint format lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.lock requirements-reference.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements-reference.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed ## Create .venv and install the exact locked versions

repro: install ## Run the whole pipeline (dvc repro) on the embedded synthetic default
	dvc repro
	@echo "Summary: reports/summary.md, figures: reports/figures/, metrics: dvc metrics show"
	@echo "Compare the runs in the MLflow UI: make ui  (then open the address it prints)"

benchmark: install ## Time the whole default pipeline from nothing -> reports/benchmarks/pipeline.json
	python -m medran.benchmark

benchmark-ci: install ## The same at CI scale (configs/ci.yaml) -> reports/benchmarks/pipeline-ci.json
	python -m medran.benchmark --overrides configs/ci.yaml --out reports/benchmarks/pipeline-ci.json

benchmark-gpu: install ## Attack, pre-training and robust-eval throughput and MFU on a CUDA GPU -> reports/benchmarks/gpu.json (ARGS=--dry-run: tiny, on the CPU)
	python benchmarks/gpu.py $(ARGS)

test: install browser js ## Run all test tiers (unit, integration, pipeline)
	pytest

test-fast: install ## Run the unit and integration tiers only
	pytest -m "not slow"

PORT ?= 5000

ui: install ## Open the MLflow UI on mlflow.db at 127.0.0.1:5000 (make ui PORT=5001)
	python -m medran.ui --port $(PORT)

# The browser test drives Debian's Chromium; without it that part skips, naming what is missing.
browser: ## Install Chromium and chromedriver from Debian if missing (needs root and apt-get)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		echo "browser: chromium and chromedriver are installed"; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "browser: not installing chromium (needs root and apt-get); the browser test will skip"; \
	else \
		echo "browser: apt-get install chromium chromium-driver"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium chromium-driver >/dev/null \
		|| echo "browser: apt-get failed; the browser test will skip"; \
	fi

PLOTS_TEMPLATE := build/plots/template.html

# Vega, Vega-Lite and vega-embed pinned in package.json + package-lock.json, inlined into the
# page template so the plots open offline (dvc plots show otherwise loads them from a CDN).
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

# For the tests' offline-plots check; without npm that check skips, naming what is missing.
js:
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory node_modules/.package-lock.json; \
	else echo "js: npm not found; the offline plots check will skip"; fi

$(PLOTS_TEMPLATE): node_modules/.package-lock.json tools/plots_template.py | install
	python tools/plots_template.py --out $@

plots: install $(PLOTS_TEMPLATE) ## Render the DVC plots to dvc_plots/index.html (opens offline)
	dvc plots show --html-template $(PLOTS_TEMPLATE) --out dvc_plots

lint: install ## Check style with ruff
	ruff check . && ruff format --check .

format: install ## Format and fix with ruff
	ruff format . && ruff check --fix .

# Resolve with pip, then record every installed version (setuptools too: torch requires it)
# with the hashes of its PyPI files.
lock: | $(BIN)/python ## Re-resolve dependencies from pyproject.toml into requirements.lock (pins + hashes)
	$(BIN)/python -m pip install --quiet --upgrade -e ".[dev]"
	mkdir -p build
	$(BIN)/python -m pip freeze --all --exclude pip --exclude-editable --exclude torchattacks > build/freeze.txt
	$(BIN)/uv pip compile build/freeze.txt --no-deps --generate-hashes --no-header \
		--no-annotate --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o build/hashed.txt
	{ echo "# Exact versions of every package the project installs (Python 3.11, Linux x86_64), with"; \
	  echo "# the hashes of their PyPI files. Regenerate with \`make lock\` after changing pyproject.toml."; \
	  cat build/hashed.txt; } > requirements.lock

clean: ## Remove the virtual environment and caches (not DVC data)
	rm -rf $(VENV) .pytest_cache .ruff_cache
