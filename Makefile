# The two commands a fresh machine needs: `make demo` and `make test`.
# Everything else (virtualenv, packages, Elasticsearch, the Collector) is set up on the way.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
DEMO_OUT ?= otel-ai-audit-demo

.PHONY: demo test test-unit test-go typecheck bench services services-down services-prepare clean help

help:
	@echo "make demo           run the three scenarios on the embedded store (writes $(DEMO_OUT)/)"
	@echo "make test           set up everything and run the whole test-suite"
	@echo "make test-unit      the fast tests only (no services), for a quick loop"
	@echo "make test-go        the Collector audit processor's Go tests"
	@echo "make typecheck      mypy ([tool.mypy] in pyproject.toml: strict on the core packages and benchmarks/)"
	@echo "make bench          run the benchmarks"
	@echo "make services       start Elasticsearch + Collector in the background (.services.env)"
	@echo "make services-down  stop them"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

$(VENV)/.installed-base: pyproject.toml | $(PY)
	$(PIP) -e '.[demo]'
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) -e '.[test]'
	@touch $@ $(VENV)/.installed-base

demo: $(VENV)/.installed-base
	$(VENV)/bin/otel-ai-audit demo --out $(DEMO_OUT)

# Resolves Elasticsearch through Maven and builds the Collector with the OpenTelemetry
# Collector Builder; both are cached (~/.m2, Go caches, the services cache) after the first run.
services-prepare: $(VENV)/.installed-test
	$(PY) -m tests.services prepare

# The whole suite, with the thorough Hypothesis profile (more examples per property).
test: typecheck services-prepare test-go
	$(PY) -m pytest --hypothesis-profile=ci

# The Collector audit processor's Go tests (pdata, the shared vectors in tests/vectors/).
test-go:
	cd collector/auditprocessor && go test ./...

# Fast tests that need no service: a developer's loop while changing code (Hypothesis's
# default "dev" profile, registered in tests/conftest.py).
test-unit: $(VENV)/.installed-test
	$(PY) -m pytest tests/unit

typecheck: $(VENV)/.installed-test
	$(PY) -m mypy
	$(PY) -m mypy benchmarks

bench: services-prepare
	$(PY) -m benchmarks

services: services-prepare
	$(PY) -m tests.services up

services-down:
	@test -x $(PY) && $(PY) -m tests.services down || true

clean: services-down
	rm -rf $(VENV) .services .services.env .pytest_cache .hypothesis .mypy_cache
