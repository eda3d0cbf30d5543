# GeoGate: `make run` starts the gateway with the quickstart policy and demo LLM; `make test` runs everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

IDP := tests/idp
IDP_STAMP := $(IDP)/node_modules/.installed

.PHONY: run test lint typecheck pytest bench clean system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/geogate up

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict src/

# SAML signatures are checked by the xmlsec1 tool (pysaml2's default backend).
system-deps:
	@command -v xmlsec1 >/dev/null || { apt-get update -qq && apt-get install -y -qq xmlsec1 >/dev/null; }

# The real OpenID provider the tests run (panva's oidc-provider), pinned by its lock file.
$(IDP_STAMP): $(IDP)/package.json $(IDP)/package-lock.json
	cd $(IDP) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

pytest: $(STAMP) $(IDP_STAMP) system-deps
	$(BIN)/pytest -q -n 2 --dist loadfile

test: lint typecheck pytest

# The bench extra adds Presidio, which bench.masking measures beside GeoGate's own engine.
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.auth
	$(BIN)/python -m bench.residency
	$(BIN)/python -m bench.masking
	$(BIN)/python -m bench.recording
	$(BIN)/python -m bench.reviews

clean:
	rm -rf $(VENV) $(IDP)/node_modules .geogate .mypy_cache .pytest_cache .ruff_cache
