# The rebate engine. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,embedded]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the engine with its dev and embedded extras

tools: ## install the optional system tools the deploy tests use (promtool, prometheus, docker-compose)
	@scripts/ensure-tools

lint: $(STAMP) ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) tools lint ## set up, lint, then run the whole test suite
	$(BIN)/pytest -q

test-kafka: $(STAMP) ## the integration tier on Apache Kafka only (resolved by Maven on first use)
	REBATE_TEST_BROKER=kafka $(BIN)/pytest -q tests/integration

demo: $(STAMP) ## replay the sample fills through the real Faust worker on the embedded broker and Redis
	$(BIN)/rebate-engine demo

bench: $(STAMP) ## measure engine-only, Faust worker and plain aiokafka pipeline side by side
	$(BIN)/rebate-engine bench

docs: $(STAMP) ## regenerate the README's configuration reference from the settings object
	$(BIN)/python scripts/docs.py README.md

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

.PHONY: help install tools lint test test-kafka demo bench docs fmt clean
