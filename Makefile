# Godel — the two commands: `make up` and `make test`. Everything installs itself on first use.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
BUF_BREAKING_AGAINST ?= .git\#branch=main
PY_SOURCES := services deploy clients/python tests bench tools

.PHONY: help setup gen lint check-gen test test-fast up down bench selftest wheel clean console

help:
	@echo "make up        start Kafka, the four services and the Envoy gateway (127.0.0.1:7373)"
	@echo "make down      stop what make up started (data in .data/ is kept)"
	@echo "make test      lint + generated-code checks + the full test suite (real Kafka, PostgreSQL, Envoy)"
	@echo "make gen       regenerate gen/ (python, go, ts, openapi), gateway/godel.pb and docs/kafka-topics.md from proto/"
	@echo "make lint      buf lint/format/breaking, stale gen/, envoy validate, ruff, mypy, go vet, tsc,"
	@echo "               Dockerfiles, compose file and Helm chart (tools/deploy/lint.sh)"
	@echo "make console   build the web console (console/ -> console/dist, served by the gateway at /ui/)"
	@echo "make wheel     build the godel-client wheel (client, CLI and generated code) into dist/"
	@echo "make bench     every benchmark under bench/: figures to bench/results/<name>.json, then compared with HEAD's"

# Two distributions, both editable: godel-client (clients/python: the client, the CLI and the
# generated godel.v1 code) and godel (the services and launchers), which depends on it.
$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ./clients/python -e '.[dev]'
	@# A venv made when the CLI came with `godel` loses bin/godel as that old version is uninstalled.
	@test -x $(VENV)/bin/godel || $(PY) -m pip install -q --no-deps --force-reinstall -e ./clients/python
	@touch $@

setup: $(VENV)/.installed

gen: setup
	tools/gen/python.sh
	tools/gen/go.sh
	tools/gen/ts.sh
	tools/gen/openapi.sh
	tools/gen/descriptor.sh
	$(PY) tools/gen/kafka_topics.py

# Regenerates everything and fails when the committed files differ ("run make gen").
check-gen: gen
	@if [ -n "$$(git status --porcelain -- gen gateway/godel.pb docs/kafka-topics.md)" ]; then \
	  git status --porcelain -- gen gateway/godel.pb docs/kafka-topics.md; \
	  echo "Generated files are out of date: run 'make gen' and commit the result."; exit 1; fi

lint: setup check-gen
	buf lint
	buf format -d --exit-code
	@if git rev-parse --verify -q main >/dev/null; then buf breaking --against '$(BUF_BREAKING_AGAINST)'; fi
	$(PY) -m godel_deploy.gateway --validate
	ruff check $(PY_SOURCES)
	ruff format --check $(PY_SOURCES)
	mypy $(PY_SOURCES)
	tools/gen/check-go.sh
	tools/gen/check-ts.sh
	tools/gen/check-openapi.sh
	tools/deploy/lint.sh

test: lint console
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -q -m "not integration"

up: setup console
	$(PY) -m godel_deploy.up

# The web console (Vite + Preact over the TypeScript client), rebuilt when a source changed.
CONSOLE_SOURCES := $(shell find console/src -type f) $(wildcard console/*.json console/*.ts console/*.html) \
	$(shell find clients/ts/src -path '*/src/gen' -prune -o -type f -print) clients/ts/package-lock.json \
	$(shell find gen/ts/godel -type f)
console/dist/index.html: $(CONSOLE_SOURCES)
	tools/console/build.sh

console: console/dist/index.html

down:
	@test -x $(PY) && $(PY) -m godel_deploy.down || echo "nothing to stop"

# On PostgreSQL, the database issue 18's targets are stated for; `make bench BENCH_DB=sqlite` runs
# the services on their default SQLite files instead.
BENCH_DB ?= postgres
$(if $(filter-out postgres sqlite,$(BENCH_DB)),$(error BENCH_DB must be postgres or sqlite, not '$(BENCH_DB)'))
BENCH_FLAGS := $(if $(filter postgres,$(BENCH_DB)),--postgres,)
bench: setup
	$(PY) bench/spawn_latency.py $(BENCH_FLAGS)
	$(PY) bench/event_latency.py $(BENCH_FLAGS)
	$(PY) bench/agent_execution.py $(BENCH_FLAGS)
	$(PY) bench/workflow_dag.py $(BENCH_FLAGS)
	$(PY) bench/team_run.py $(BENCH_FLAGS)
	$(PY) bench/sandbox_cost.py
	$(PY) bench/worker_bringup.py
	$(PY) bench/crash_recovery.py $(BENCH_FLAGS)
	$(PY) bench/mixed_load.py $(BENCH_FLAGS)
	$(PY) bench/compare.py

# The wheel users install (`pip install dist/godel_client-*.whl`); built without an isolated env
# from the pinned build tools of the dev install.
wheel: setup
	rm -rf clients/python/build
	$(PY) -m build --wheel --no-isolation --outdir dist clients/python

selftest: setup
	$(PY) -m godel_deploy.selftest

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache dist
