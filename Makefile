# Trellis — one command sets everything up: `make test`, `make demo`, `make bench`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEB_STAMP := $(VENV)/.debs
# gcc: mypyc compiles the data plane's hot path (tools/compile_hot_path.py).
# chromium: the dashboard's browser test (Playwright drives it; no browser download).
DEB_PACKAGES := curl gcc chromium
COMPILED := src/trellis/compiled-manifest.json
HOT_SOURCES := $(wildcard src/trellis/compiled.py src/trellis/authz/*.py src/trellis/proxy/config/*.py \
	src/trellis/proxy/http1/*.py \
	src/trellis/proxy/listeners/*.py src/trellis/proxy/stack/*.py \
	src/trellis/proxy/telemetry/*.py src/trellis/routing/*.py)
# prometheus: a real Prometheus scrapes the sidecars in tests/integration/test_prometheus.py.
DEB_PACKAGES += prometheus
# `make bench` only: HAProxy (backend and reference pair), wrk (max throughput), valgrind
# (bench.instructions and bench.sdk_span_cost: instructions per request, per span).
BENCH_STAMP := $(VENV)/.bench-deps
BENCH_DEB_PACKAGES := haproxy wrk valgrind

.PHONY: test demo bench lint typecheck unit integration install clean clean-compiled

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# xds-protos ships an old copy of opentelemetry/proto/ (no InstrumentationScope) into the
# same package directory as opentelemetry-proto; whichever pip writes last wins, and pip's
# order is not fixed. opentelemetry-proto is written again, last (trellis/otlp_check.py).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --force-reinstall --no-deps "$$(grep -o '"opentelemetry-proto[^"]*"' pyproject.toml | tr -d '"')"
	touch $@

$(DEB_STAMP): Makefile | $(BIN)/python
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi
	touch $@

$(BENCH_STAMP): Makefile | $(BIN)/python
	@missing=""; for p in $(BENCH_DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi
	touch $@

# The hot path compiled with mypyc, beside its sources; rebuilt when any of them changes
# (an out-of-date compiled module refuses to load: trellis/compiled.py).
$(COMPILED): $(HOT_SOURCES) tools/compile_hot_path.py $(STAMP) $(DEB_STAMP)
	$(BIN)/python tools/compile_hot_path.py

install: $(STAMP) $(DEB_STAMP) $(COMPILED)

lint: install
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q -m "not integration"

# The whole suite runs against the compiled hot path; its unit tests run a second time on
# the sources (trellis/compiled.py: faults can be compiled-only, or interpreted-only).
HOT_UNIT_TESTS := tests/proxy tests/routing tests/authz tests/test_compiled.py

# Test files run three at a time (pytest-xdist, one file per worker: module fixtures are
# shared as before); most of an integration test is waiting on processes and sockets.
# Tests marked `serial` (rates and deadlines under load) run alone afterwards.
test: install lint typecheck
	$(BIN)/pytest -q --durations=25 -n 3 --dist loadfile -m "not serial"
	$(BIN)/pytest -q --durations=10 -m serial
	TRELLIS_INTERPRETED=1 $(BIN)/pytest -q -m "not integration" $(HOT_UNIT_TESTS)

demo: install
	$(BIN)/python -m trellis.demo

bench: install $(BENCH_STAMP)
	$(BIN)/python -m bench

clean-compiled:
	$(PY) tools/compile_hot_path.py --clean

clean: clean-compiled
	rm -rf build $(VENV) .trellis .pytest_cache .mypy_cache .ruff_cache
