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

# Debian's prometheus package brings promtool and the server the deploy tests use. Installed
# once when missing and apt-get can run as root; otherwise those tests skip and say why.
tools:
	@if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's prometheus (promtool and server) for the deploy tests"; \
		export DEBIAN_FRONTEND=noninteractive; \
		{ apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus \
		|| { apt-get -o DPkg::Lock::Timeout=300 update -qq \
		&& apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus; }; \
		} >/dev/null || echo "could not install prometheus: the Prometheus tests will skip"; \
	else \
		echo "promtool/prometheus missing and apt-get cannot run as root here: the Prometheus tests will skip"; \
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
