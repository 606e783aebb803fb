# StockWatch — the two front doors are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
export STOCKWATCH_CACHE_DIR ?= $(CURDIR)/.stack/cache
export PIP_CACHE_DIR ?= $(STOCKWATCH_CACHE_DIR)/pip
PYTEST_ARGS ?=

.PHONY: venv stack-up stack-down stack-status test test-unit lint rules-check demo bench eval chaos chaos-down clean

# The venv is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (StockWatch needs Python 3.11+)"; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev,confluent]'
	touch $@

venv: $(VENV)/.installed

stack-up: venv
	bash stack/stack.sh up

stack-down:
	bash stack/stack.sh down

stack-status: venv
	bash stack/stack.sh status

# Unit and integration tests against the local stack (started if needed, left running:
# `make stack-down` stops it).
test: stack-up
	$(VENV)/bin/python -m detection.warmup  # compile numba's kernels once, not inside a test's time limit
	STOCKWATCH_KAFKA_BOOTSTRAP=$${STOCKWATCH_KAFKA_BOOTSTRAP:-127.0.0.1:9092} \
	STOCKWATCH_MONGO_URI=$${STOCKWATCH_MONGO_URI:-mongodb://127.0.0.1:27017} \
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-unit: venv
	$(VENV)/bin/pytest -m 'not integration' $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The alert rules (deploy/prometheus): syntax, the example config, and their unit tests. promtool
# comes from PATH or Debian's prometheus package, cached under $(STOCKWATCH_CACHE_DIR).
rules-check:
	@promtool=$$(bash deploy/promtool.sh) && \
	$$promtool check rules deploy/prometheus/alerts.yml && \
	$$promtool check config deploy/prometheus/prometheus.yml && \
	cd deploy/prometheus && $$promtool test rules alerts_test.yml

demo: stack-up
	$(VENV)/bin/python -m detection.warmup  # compile numba's kernels once: a cold consumer would miss step 4's watch
	$(VENV)/bin/python -m scripts.demo

bench: venv
	$(VENV)/bin/python -m bench

# Fault injection (python -m chaos): kills brokers, FerretDB and services, so it runs on a stack of its
# own (.stack/chaos on ports 39092/39093/39094/27039, started from empty data and stopped at the end; never
# the shared one). `make chaos CHAOS_ARGS=--quick` is what CI runs; exit 1 if a guarantee was violated.
CHAOS_ARGS ?=
CHAOS_STACK := STOCKWATCH_STACK_DIR=$(CURDIR)/.stack/chaos STOCKWATCH_STACK_KAFKA_PORT=$${CHAOS_KAFKA_PORT:-39092} \
	STOCKWATCH_STACK_CONTROLLER_PORT=$${CHAOS_CONTROLLER_PORT:-39093} STOCKWATCH_STACK_MONGO_PORT=$${CHAOS_MONGO_PORT:-27039} \
	STOCKWATCH_STACK_SASL_PORT=$${CHAOS_SASL_PORT:-39094}
chaos: venv
	$(VENV)/bin/python -m chaos $(CHAOS_ARGS)

chaos-down:
	$(CHAOS_STACK) bash stack/stack.sh down

# Seed vs default detector on simulator data: `make eval` simulates (EVAL_SEED, EVAL_ITEMS);
# `make eval EVAL_ARGS="--items S --events E --labels L"` evaluates given files.
EVAL_SEED ?= 1
EVAL_ITEMS ?= 3000
EVAL_ARGS ?= --simulate --seed $(EVAL_SEED) --items-count $(EVAL_ITEMS)
eval: venv
	$(VENV)/bin/python -m scripts.eval_detectors $(EVAL_ARGS)

clean: stack-down chaos-down
	rm -rf .stack/kafka .stack/ferretdb .stack/chaos .demo .bench .chaos
