# Freshet: `make up` runs the whole system, `make test` runs every test.
# Both install what they need first (uv, then the locked workspace).

SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
# Tests spread over both cores; e2e modules keep their started processes per module.
PYTEST_WORKERS ?= 2

.PHONY: up test lint format bench install uv schemas clean chromium

uv:
	@$(UV) --version >/dev/null 2>&1 || { echo "installing uv"; \
		$(PYTHON) -m pip install --quiet uv || $(PYTHON) -m pip install --quiet --user uv; }

install: uv
	@$(UV) sync --all-packages --frozen --quiet

up: install
	@$(UV) run --frozen --no-sync python -m freshet.devstack up

# The browser tests drive Debian's Chromium (Playwright cannot download a browser here).
CHROMIUM ?= /usr/bin/chromium

chromium:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: install chromium
	@$(UV) run --frozen --no-sync pytest -n $(PYTEST_WORKERS) --dist loadgroup

lint: install
	@$(UV) run --frozen --no-sync ruff check .
	@$(UV) run --frozen --no-sync ruff format --check .
	@$(UV) run --frozen --no-sync mypy libs services tests bench

format: install
	@$(UV) run --frozen --no-sync ruff format .
	@$(UV) run --frozen --no-sync ruff check --fix .

bench: install
	@$(UV) run --frozen --no-sync python -m bench

schemas: install
	@$(UV) run --frozen --no-sync python -m freshet.contracts.schemas docs/events

clean:
	rm -rf var test-artifacts .pytest_cache .mypy_cache .ruff_cache
