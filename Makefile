# The README's two commands: `make demo` and `make test`. Both install what they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
ENV ?= dev
CDK := node_modules/.bin/cdk
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install build browser java scale scale-full demo test test-faults lint typecheck pytest synth deploy bench clean openapi

help:
	@echo "make demo             run the whole path locally; serve the API and the console at http://127.0.0.1:8080/ (Ctrl-C stops it)"
	@echo "make test             ruff, mypy, pytest (unit, infrastructure, local end-to-end, the console in Chromium)"
	@echo "make test-faults      the update path's fault run at 10,080 events on two shards (~8 min)"
	@echo "make synth ENV=dev    cdk synth with cdk-nag (ENV=dev|prod)"
	@echo "make deploy ENV=dev   cdk deploy (needs AWS credentials)"
	@echo "make openapi          write the API document from the HTTP functions' resolvers"
	@echo "make bench            every benchmark in tests/bench, one after another (~70 min); logs in .local/bench/"
	@echo "make scale            the offline stages on stores of 10k-300k shoppers, fitted and extrapolated to the envelope"
	@echo "make scale-full       the training as at the envelope with the full grids (the deployed default's up to 1 B)"
	@echo "make install | build | browser | java | lint | typecheck | pytest | clean   the steps the above are made of"

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed node_modules/.installed

# the console's browser test drives the OS's Chromium (Playwright's own download cannot run here)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null || { echo "installing Chromium for the console's browser test ..."; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# Lambda layers and the SageMaker source tarball, built without Docker (layers/build.py)
build: $(BIN)/.installed
	$(BIN)/python layers/build.py

demo: $(BIN)/.installed
	$(BIN)/shopwise local up

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy layers/core lambdas local sagemaker_jobs cdk tests

# the data set build on Spark runs PySpark in local mode: a Java runtime (17, Debian's default)
java:
	@command -v java >/dev/null || { echo "installing a Java runtime for PySpark ..."; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq default-jre-headless >/dev/null; }

pytest: install build browser java
	$(BIN)/pytest --durations=15

test: lint typecheck pytest

# the update path's fault run at 10,080 events (make test runs it at 1,920): ~8 minutes on 2 cores
test-faults: install build
	SHOPWISE_FAULT_SCALE=42 $(BIN)/pytest -q tests/e2e/test_update_path.py -k faults

CODE_VERSION := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

synth: install build
	$(CDK) synth --no-notices -c env=$(ENV) -c code_version=$(CODE_VERSION) -o cdk.out/$(ENV) --quiet
	@echo "synthesized shopwise-$(ENV) into cdk.out/$(ENV) (cdk-nag AwsSolutions: no unacknowledged findings)"

deploy: install build
	$(CDK) deploy --no-notices -c env=$(ENV) -c code_version=$(CODE_VERSION) -o cdk.out/$(ENV) shopwise-$(ENV)

clean:
	rm -rf .build cdk.out .local .mypy_cache .ruff_cache .pytest_cache

# the API document (layers/core/shopwise/openapi.json) from the HTTP functions' resolvers; a unit test checks it is current
openapi: $(BIN)/.installed
	$(BIN)/python -m shopwise_local.openapi

# every benchmark, one after another (they measure time: never two at once on this machine); each prints its figures
# and ends with a JSON line, kept in .local/bench/<name>.log
BENCHES := bench_update bench_wire bench_heap bench_serve bench_read bench_fit bench_training bench_transform bench_load bench_campaigns bench_erase bench_crossings bench_import bench_archive bench_dataset bench_sessions bench_models bench_evaluate
# the offline path's growth: stages on simulated stores of 10,000 to 100,000 shoppers (about 35 minutes on 2 cores;
# 300,000 more is the script's default, about an hour more here: SCALE_SHOPPERS=10000,30000,100000,300000)
SCALE_SHOPPERS ?= 10000,30000,100000
scale: install build
	@mkdir -p .local/bench
	$(BIN)/python tests/bench/bench_scale.py --shoppers $(SCALE_SHOPPERS) --readme 2>&1 | tee .local/bench/bench_scale.log | tail -n 8

# the deployed default's full grids (budget=auto up to 1 B interactions): the training as at the envelope alone,
# tuned with every family's grid, into its own README block (about 40 minutes for the four sizes here)
scale-full: install build
	@mkdir -p .local/bench
	SHOPWISE_SCALE_REPEATS=1 $(BIN)/python tests/bench/bench_scale.py --shoppers $(SCALE_SHOPPERS) --budget full \
		--stages "training as at the envelope,item-kNN at the envelope's width" --readme 2>&1 | tee .local/bench/bench_scale.budget-full.log | tail -n 8

bench: install build
	@mkdir -p .local/bench
	@set -o pipefail; for b in $(BENCHES); do \
		echo "== $$b"; \
		$(BIN)/python tests/bench/$$b.py 2>&1 | tee .local/bench/$$b.log | tail -n 3 || exit 1; \
	done
