# The README's two commands: `make run` and `make test`.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo .venv-tools/bin/uv)
PYTHON_VERSION ?= 3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint format browsers bench clean image

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

lint: install  ## ruff everywhere; mypy --strict on the portal and the gateway
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict portal gateway_plugins

bench: install  ## Side-by-side CPU per call: fake upstream, stock LiteLLM proxy, our gateway (bench/README.md)
	$(BIN)/python -m bench.gateway_overhead

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

image:  ## Build deploy/Dockerfile daemonless with buildah; IMAGE_ARGS=--smoke also runs it (docs/operations.md)
	deploy/build-image.sh $(IMAGE_ARGS)

clean:
	rm -rf $(VENV) .venv-tools var .pytest_cache .ruff_cache test-artifacts
