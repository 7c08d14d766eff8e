# Freshet: `make up` runs the whole system, `make test` runs every test.
# Both install what they need first (uv, then the locked workspace).

SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
# Tests spread over both cores; e2e modules keep their started processes per module.
PYTEST_WORKERS ?= 2

.PHONY: up test lint format bench install uv schemas clean tools

uv:
	@$(UV) --version >/dev/null 2>&1 || { echo "installing uv"; \
		$(PYTHON) -m pip install --quiet uv || $(PYTHON) -m pip install --quiet --user uv; }

install: uv
	@$(UV) sync --all-packages --frozen --quiet

up: install
	@$(UV) run --frozen --no-sync freshet up

# Debian packages the tests use: Chromium for the browser tests (Playwright cannot download a
# browser here) and Prometheus (promtool and the server) for the deploy tests. Installed once
# when missing, as root with apt-get; where that is impossible, say so (those tests then skip
# or fail naming what is missing).
tools:
	@missing=""; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's$$missing for the tests"; \
		export DEBIAN_FRONTEND=noninteractive; \
		{ apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $$missing \
		|| { apt-get -o DPkg::Lock::Timeout=300 update -qq \
		&& apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $$missing; }; \
		} >/dev/null || echo "could not install$$missing: the tests that need it will say so"; \
	else \
		echo "missing$$missing and apt-get cannot run as root here: the tests that need it will say so"; \
	fi

test: install tools
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
