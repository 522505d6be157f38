# The README's two commands: `make run` and `make test`.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo .venv-tools/bin/uv)
PYTHON_VERSION ?= 3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test test-prod litellm-check lint format browsers bench clean image

$(UV):
	python3 -m venv .venv-tools && .venv-tools/bin/pip install --quiet "uv==0.13.9"

install: $(UV)  ## Create .venv from uv.lock (exact versions, hashes checked)
	$(UV) sync --locked --python $(PYTHON_VERSION)

run: install  ## Migrate and start gateway (:4000) + portal (:8080) on embedded defaults; Ctrl-C stops both
	$(BIN)/gateway-admin db upgrade
	$(BIN)/gateway-admin serve

TEST_WORKERS ?= 2
test: install  ## Run the whole suite on TEST_WORKERS processes (PostgreSQL/Redis suites skip if those servers are absent)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# What ships: the production dependency set (`--no-dev`, as deploy/Dockerfile installs it)
# plus the test tools only, in its own environment; the end-to-end tests (real gateway and
# portal processes, SDK clients, Chromium) run there, so a module only the dev tools bring
# in fails here before it fails in the image.
PROD_VENV := .venv-prod
E2E_TESTS ?= -m "gateway or browser or portal_process"
test-prod: $(UV)  ## The end-to-end tests on the production dependency set (+ test tools)
	UV_PROJECT_ENVIRONMENT=$(PROD_VENV) $(UV) sync --locked --no-dev --group test --python $(PYTHON_VERSION)
	$(PROD_VENV)/bin/python -m pytest -n $(TEST_WORKERS) $(E2E_TESTS) $(PYTEST_ARGS)

litellm-check: $(UV)  ## The newest LiteLLM in a scratch environment: pins + gateway tests (docs/operations.md)
	UV=$(UV) bash .ci/litellm-check

lint: install  ## ruff everywhere; mypy --strict on the portal and the gateway
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict portal gateway_plugins

STOCK_VENV := .venv-bench-stock
bench: install  ## Side-by-side CPU per call: fake upstream, stock LiteLLM proxy, our gateway (bench/README.md)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(STOCK_VENV) $(UV) sync --locked --project bench/stock_litellm --python $(PYTHON_VERSION)
	$(BIN)/python -m bench.gateway_overhead --stock-litellm $(STOCK_VENV)/bin/litellm $(BENCH_ARGS)

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

image:  ## Build deploy/Dockerfile daemonless with buildah; IMAGE_ARGS=--smoke also runs it (docs/operations.md)
	deploy/build-image.sh $(IMAGE_ARGS)

clean:
	rm -rf $(VENV) $(PROD_VENV) $(STOCK_VENV) .venv-tools var .pytest_cache .ruff_cache test-artifacts
