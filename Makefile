# roomkeeper: `make dev` runs everything locally, `make test` runs every check. Both bootstrap
# themselves on a fresh machine: a virtualenv with the project installed, and redis-server from
# Debian when it is missing (redis-sentinel too, for the failover tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install redis-server redis-sentinel php-cli nodejs js-sdk chromium dev test test-fast lint \
	typecheck pytest bench bench-quick format clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

redis-server:
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }
	@redis-server --version

# The console's browser tests drive Debian's chromium through Playwright (never a downloaded
# browser build).
chromium:
	@command -v chromium >/dev/null || { \
		echo "installing chromium with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

redis-sentinel: redis-server
	@command -v redis-sentinel >/dev/null || { \
		echo "installing redis-sentinel with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-sentinel >/dev/null; }
	@redis-sentinel --version

# The README's webhook verification snippets are run by Debian's php and node in the suite.
php-cli:
	@command -v php >/dev/null || { \
		echo "installing php-cli with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq php-cli >/dev/null; }

nodejs:
	@command -v node >/dev/null || { \
		echo "installing nodejs with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs >/dev/null; }

install: $(STAMP) redis-server redis-sentinel

# plugNmeet's JavaScript SDK for tests/test_sdk_js.py, at the version package-lock.json pins.
# --ignore-scripts: its only script is a preinstall that insists on pnpm.
JS_SDK := tests/js/node_modules/plugnmeet-sdk-js/package.json
$(JS_SDK): tests/js/package.json tests/js/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { \
		echo "installing nodejs and npm with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; }
	cd tests/js && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $(JS_SDK)

js-sdk: $(JS_SDK)

dev: install
	$(BIN)/roomkeeper dev

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

# Two workers: the heavy modules (tests/conftest.py's HEAVY) run one after another on one of
# them, everything else shares the other; most of the rest waits on real time, not the CPU.
pytest: install php-cli nodejs js-sdk chromium
	$(BIN)/pytest -n 2 --dist loadgroup

test: lint typecheck pytest

# The quick loop: lint, typecheck and every test not marked slow (no roomkeeper processes, no
# injected faults, no real-time waits), four at a time: these wait on Redis and HTTP more than
# they use the CPU, so four workers beat two even on 2 cores. `make test` runs everything.
test-fast: lint typecheck
	$(BIN)/pytest -q -m "not slow" -n 4

BENCHES := create timers deliveries http_client inbound bulk schedule console

# Every benchmark's output goes to bench/results/last.log too; bench.summary then prints issue
# 12's goal table from that one run.
bench: install  # the figures in the README (about 20 minutes)
	@mkdir -p bench/results
	@set -o pipefail; for b in $(BENCHES); do $(BIN)/python -m bench.$$b || exit 1; done \
		2>&1 | tee bench/results/last.log
	@$(BIN)/python -m bench.summary bench/results/last.log

bench-quick: install  # each benchmark's small run (about 3 minutes)
	@for b in $(BENCHES); do $(BIN)/python -m bench.$$b --quick || exit 1; done

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .dev .mypy_cache .pytest_cache .ruff_cache
