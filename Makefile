# Retail Vision Catalog: the two commands are `make run` and `make test`.
# Every target installs what it needs first (scripts/setup-*.sh: idempotent and quiet).
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo

.DEFAULT_GOAL := help
.PHONY: help setup build run test test-fast test-rules test-manifests lint fmt bench eval clean-test-dbs fuzz-api

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: ## install missing tools and services (apt, cargo install, python venv, model)
	@scripts/setup-system.sh
	@scripts/setup-s3.sh
	@scripts/setup-model.sh
	@scripts/setup-kafka.sh
	@scripts/setup-prometheus.sh
	@scripts/setup-k8s-validate.sh
	@scripts/setup-pos-client.sh
	@scripts/setup-schemathesis.sh
	@scripts/check-setup.sh

build: setup ## build every binary
	@$(CARGO) build --workspace --bins --quiet

run: build ## build and start the whole system locally (Ctrl-C stops it)
	@scripts/run-local.sh

lint: setup ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --quiet -- -D warnings

test: lint test-rules test-manifests ## lint, then the whole test suite against real services
	$(CARGO) build --workspace --bins --quiet  # the end-to-end tests run every binary
	$(CARGO) nextest run --workspace --no-fail-fast
	@scripts/fuzz-api.sh

fuzz-api: setup ## schemathesis against the ingest and read APIs' OpenAPI documents (with and without keys)
	@$(CARGO) build --quiet -p rvc-ingest-api -p rvc-catalog -p rvcctl --bins
	@scripts/fuzz-api.sh

test-rules: ## promtool: check the Prometheus config and rules, run the alert unit tests
	@scripts/setup-prometheus.sh
	@promtool check config --lint=all deploy/prometheus/prometheus.yml deploy/prometheus/compose.yml >/dev/null
	@promtool test rules deploy/prometheus/tests/*.yml

test-manifests: ## validate deploy/k8s (rendered, against the Kubernetes schemas, offline) and compose.yaml
	@scripts/setup-k8s-validate.sh
	@.venv/bin/python scripts/validate-manifests.py

test-fast: setup ## unit tests only (no external services)
	$(CARGO) nextest run --workspace --lib --bins

fmt: ## format the code
	$(CARGO) fmt --all

bench: setup ## benchmarks; figures go to docs/benchmarks.md
	@scripts/setup-bench.sh
	@scripts/bench.sh

eval: setup ## recognition evaluation, table in docs/recognition.md (EVAL_ARGS="--every 6" for a quick run)
	@scripts/setup-eval.sh
	@$(CARGO) build --quiet -p rvc-vector-server -p rvc-recognition --bins
	@.venv/bin/python scripts/eval_recognition.py build --wheels var/eval/wheels --out var/eval/data
	@target/debug/rvc-recognition-eval --data var/eval/data --out var/eval/results.jsonl $(EVAL_ARGS)
	@.venv/bin/python scripts/eval_recognition.py score --data var/eval/data --results var/eval/results.jsonl

clean-test-dbs: ## drop databases left behind by interrupted tests
	@psql -h 127.0.0.1 -U postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'rvc_test_%'" \
	  | xargs -r -I{} psql -h 127.0.0.1 -U postgres -qc 'DROP DATABASE IF EXISTS "{}" WITH (FORCE)'
