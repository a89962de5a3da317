# Godel — the two commands: `make up` and `make test`. Everything installs itself on first use.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
BUF_BREAKING_AGAINST ?= .git\#branch=main
PY_SOURCES := services deploy clients/python tests bench

.PHONY: help setup gen lint check-gen test test-fast up down bench selftest clean

help:
	@echo "make up        start Kafka, the four services and the Envoy gateway (127.0.0.1:7373)"
	@echo "make down      stop what make up started (data in .data/ is kept)"
	@echo "make test      lint + generated-code checks + the full test suite (real Kafka, PostgreSQL, Envoy)"
	@echo "make gen       regenerate gen/ (python, go, ts, openapi) and gateway/godel.pb from proto/"
	@echo "make lint      buf lint/format/breaking, stale gen/, envoy validate, ruff, mypy, go vet, tsc"
	@echo "make bench     benchmarks under bench/ (prints figures)"

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

setup: $(VENV)/.installed

gen: setup
	tools/gen/python.sh
	tools/gen/go.sh
	tools/gen/ts.sh
	tools/gen/openapi.sh
	tools/gen/descriptor.sh

# Regenerates everything and fails when the committed files differ ("run make gen").
check-gen: gen
	@if [ -n "$$(git status --porcelain -- gen gateway/godel.pb)" ]; then \
	  git status --porcelain -- gen gateway/godel.pb; \
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

test: lint
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -q -m "not integration"

up: setup
	$(PY) -m godel_deploy.up

down:
	@test -x $(PY) && $(PY) -m godel_deploy.down || echo "nothing to stop"

bench: setup
	$(PY) bench/spawn_latency.py
	$(PY) bench/event_latency.py
	$(PY) bench/agent_execution.py
	$(PY) bench/workflow_dag.py
	$(PY) bench/team_run.py

selftest: setup
	$(PY) -m godel_deploy.selftest

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache
