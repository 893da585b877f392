# One entry point for people and CI. Everything a target needs is installed by the target itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.package-lock.json

.PHONY: setup demo test lint bench clean

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[scoring,batch,infra,dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

demo: setup ## the whole hourly pipeline locally, on Azurite
	$(BIN)/batchscoring-demo $(ARGS)

lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy workloads infra

test: setup lint ## lint, type-check and the full test suite (starts its own Azurite, and Docker where it can)
	bash scripts/ensure-docker.sh
	$(BIN)/pytest

bench: setup
	$(BIN)/python -m benchmarks.scoring $(ARGS)

clean:
	rm -rf $(VENV) node_modules .azurite .pytest_cache .mypy_cache .ruff_cache
