# Build, run and test grpc-coordinator. `make run` and `make test` install
# what a fresh machine lacks (cmake, the Python test environment) first.

SHELL := /bin/bash

# grpcio-sys compiles gRPC C-core, several minutes on two cores. A target
# directory outside the checkout lets every clone on this machine reuse it.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/grpc-coordinator/target

CARGO ?= cargo
PYTHON ?= python3
VENV ?= .venv
BINARY := $(CARGO_TARGET_DIR)/debug/grpc-coordinator
RUN_ARGS ?=

# Pinned so the interop test runs against a known Python gRPC release.
PY_GRPC_VERSION := 1.76.0
PY_PACKAGES := grpcio==$(PY_GRPC_VERSION) grpcio-tools==$(PY_GRPC_VERSION) grpcio-health-checking==$(PY_GRPC_VERSION) pytest==8.4.2

.PHONY: all build run run-worker run-python-worker test test-rust test-python lint fmt bench clean deps python-env

all: build

## deps: install the system packages the build needs (cmake for grpcio-sys).
deps:
	@if ! command -v cmake >/dev/null 2>&1; then \
		echo "cmake not found; installing it with apt-get"; \
		if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq cmake; \
	fi
	@command -v c++ >/dev/null 2>&1 || { echo "error: a C++ compiler (g++) is required"; exit 1; }

build: deps
	$(CARGO) build --all-targets

run: deps
	$(CARGO) run --bin grpc-coordinator -- $(RUN_ARGS)

run-worker: deps
	$(CARGO) run --example worker -- $(RUN_ARGS)

## run-python-worker: the Python example worker in examples/python.
run-python-worker: python-env
	$(VENV)/bin/python examples/python/worker.py $(RUN_ARGS)

## python-env: a virtual environment with Python gRPC for the interop test.
python-env: $(VENV)/.installed

$(VENV)/.installed: Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(PY_PACKAGES)
	touch $@

test: test-rust test-python

test-rust: deps
	$(CARGO) test --all-targets

test-python: build python-env
	COORDINATOR_BINARY=$(BINARY) $(VENV)/bin/python -m pytest -q tests/python

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: deps
	$(CARGO) bench

clean:
	$(CARGO) clean
	rm -rf $(VENV)
