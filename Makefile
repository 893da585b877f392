# One entry point for people and CI. Everything a target needs is installed by the target itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.package-lock.json
# checkov (the IaC security scanner) has a large dependency tree: its own venv, never the app's.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
# checkov offline: no Bridgecrew resource-id mapping download, no PyPI version check.
export BC_SKIP_MAPPING := TRUE
export CKV_SKIP_PACKAGE_UPDATE_CHECK := TRUE

.PHONY: setup setup-checkov demo test lint scan bench bench-fleet bench-families bench-plan bench-train soak clean

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[scoring,batch,infra,report,telemetry,dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

setup-checkov: $(CHECKOV_STAMP)

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $@

demo: setup ## the whole hourly pipeline locally, on Azurite
	$(BIN)/batchscoring-demo $(ARGS)

# scripts/ is checked without the errors of what it imports from tests/ (the mocks are not strict-typed).
lint: $(PY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy workloads infra
	$(BIN)/mypy --follow-imports=silent scripts

test: setup lint scan ## lint, type-check, security scan and the full test suite (starts its own Azurite, and Docker where it can)
	bash scripts/ensure-docker.sh
	bash scripts/ensure-chromium.sh
	$(BIN)/pytest

scan: $(PY_STAMP) $(CHECKOV_STAMP) ## checkov over an ARM export of each stack's resources; fails on unjustified findings
	$(BIN)/python -m scripts.security_scan

bench: setup
	$(BIN)/python -m benchmarks.scoring $(ARGS)

# (a) reference style, (b) naive skops loop, (c) our scorer on Azurite, (d) our kernel, per fleet size;
# a table per size and build/bench/fleet.json. ARGS="--pairs 1000 --scorer-max-pairs 1000" passes options.
bench-fleet: setup
	$(BIN)/python -m benchmarks.fleet --pairs 1000 10000 100000 --out build/bench/fleet.json $(ARGS)

# Per model family: training ms, model size, and scoring ms per pair on the pack and per-pair paths (Azurite).
bench-families: setup
	$(BIN)/python -m benchmarks.families $(ARGS)

# The submitter's planning of one hour (list + plan_hour + write_manifests) at 10k, 100k and 1M pairs, on a fresh,
# restarted Azurite holding the hour's blob names (1,000 pairs per shard, 3 blobs per shard folder) and, to show the
# model listing is gone, up to 100,000 empty model blobs (Azurite's metadata store cannot save a million: it writes
# one JSON string of ~850 bytes per blob, and Node's strings stop at 512 Mi characters). build/bench/planning.json.
bench-plan: setup
	$(BIN)/python -m benchmarks.planning --pairs 10000 100000 1000000 --max-models 100000 \
		--out build/bench/planning.json $(ARGS)

# trainer submit on the local backend (2 workers, one task per shard) for 10,000 pairs x 24 h of 5-minute aggregates in
# 4 shards, with 10 bad pairs (too few windows), on a fresh Azurite restarted after the bulk load; median (min-max) of 3
# runs: wall, CPU of submitter, workers and Azurite, pairs trained and skipped by reason. build/bench/training.json.
bench-train: setup
	$(BIN)/python -m benchmarks.training --pairs 10000 --hours 24 --out build/bench/training.json $(ARGS)

# The fault campaign in full: 48 simulated hours of ingestion and hourly triggers on a fake clock (missed, double and
# killed triggers, outages before and during runs, 503 bursts, dropped connections, late, replayed, misfiled and corrupt
# data, Azurite restarts), every window checked against ground truth; build/soak/soak.json. The test suite runs a
# 4-hour version (tests/soak/test_soak.py). ARGS="--hours 96 --seed 5" for another campaign.
soak: setup
	$(BIN)/python -m tests.soak.campaign --hours 48 --seed 3 --out build/soak/soak.json $(ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build node_modules .azurite .pytest_cache .mypy_cache .ruff_cache
