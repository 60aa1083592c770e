# Two commands for a fresh clone: `make demo` and `make test`. Both build .venv from the lock first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)
export PATH := $(BIN):$(PATH)
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install demo test lint typecheck pytest chromium postgresql softhsm spark bench bench-gpu lock dashboard stack-up stack-down stack-status demo-envs demo-envs-down clean

install: $(STAMP)

# pip checks every hash in requirements.lock; --no-deps so nothing outside the lock is installed.
# (The grep hides this machine's pip-config warnings about absent local index folders.)
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements.lock 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	$(BIN)/pip install -q --no-deps --no-build-isolation -e . 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: install
	$(BIN)/attestflow demo

test: install lint typecheck pytest

# `attestflow check` (README "Pre-merge check"): secrets, model files, code rules (ruff S), templates, the supply chain.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/attestflow check .

typecheck: install
	$(BIN)/mypy

pytest: install chromium postgresql softhsm spark
	$(BIN)/pytest

# Headless Chromium for the dashboard test (tests/flows/test_dashboard_browser.py): Debian's package.
chromium:
	@test -x /usr/bin/chromium || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q && \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q --no-install-recommends chromium; }

# PostgreSQL for the stack (make stack-up) and its tests: Debian's package, where none is installed.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q && \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q --no-install-recommends postgresql; }

# SoftHSM2, a PKCS#11 token in software, for prod's signing key (configs/environments.yaml) and its tests;
# OpenSC's pkcs11-tool beside it. Debian's packages, where they are missing.
softhsm:
	@test -f /usr/lib/softhsm/libsofthsm2.so -a -x /usr/bin/pkcs11-tool || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q && \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q --no-install-recommends softhsm2 opensc; }

# The optional Spark engine of data validation (validate_data.engine: spark) and its tests: Java from Debian,
# pyspark from its own hash-locked requirements (the main lock's pins plus pyspark and py4j). Not in `make demo`.
spark: install
	@java -version >/dev/null 2>&1 || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q && \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q --no-install-recommends openjdk-17-jre-headless; }
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements-spark.lock 2>&1 | { grep -v 'is ignored: it is neither' || true; }

# Each figure beside its alternative, measured in one run (about 8 minutes on 2 CPU cores):
# writes benchmarks/results/latest.json (git-ignored) and prints the table. BENCH_ARGS=--quick for a smoke run.
bench: install
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# MiniLM fine-tuning on a GPU (samples/s, model FLOP utilisation, bf16 autocast vs fp32, DDP scaling where
# there are several): under 5 minutes on one GPU, writes benchmarks/results/gpu.json; without CUDA it says so.
bench-gpu: install
	$(BIN)/python -m benchmarks.gpu

# Regenerate requirements.lock (exact versions and hashes, CPU torch) and requirements-gpu.lock (CUDA torch).
lock:
	scripts/lock.sh

# The Prefect UI and the MLflow UI on the workspace's state (Ctrl-C stops both).
dashboard: install
	scripts/dashboard.sh

# The production topology on this machine (README "Outgrowing one machine"): PostgreSQL, Prefect and MLflow
# servers on it, moto's S3 server; then `source .attestflow/stack.env`. Exit 3 when a server does not start.
stack-up: install postgresql
	$(BIN)/python -m attestflow.stack up

stack-down: install
	$(BIN)/python -m attestflow.stack down

stack-status: install
	$(BIN)/python -m attestflow.stack status

# What `attestflow promote ... --to prod` needs (README "From staging to prod"), idempotently: prod's key in a
# SoftHSM2 token (a demo PIN), a Prefect server for the human approval, prod's drift monitor and notifying
# automations, a rollback drill once prod has a champion; then it prints the next commands.
demo-envs: install softhsm
	PYTHON=$(BIN)/python scripts/demo_envs.sh

demo-envs-down:
	PYTHON=$(BIN)/python scripts/demo_envs.sh down

clean:
	@test ! -x $(BIN)/python || $(BIN)/python -m attestflow.stack down
	@test ! -x $(BIN)/python || PYTHON=$(BIN)/python scripts/demo_envs.sh down
	rm -rf $(VENV) .attestflow .mypy_cache .ruff_cache .pytest_cache
