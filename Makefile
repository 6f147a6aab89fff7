# Two commands on a fresh machine: `make run` (or `make demo`) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run demo test lint bench clean clean-data browser-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m localstack run

demo: $(STAMP)
	$(BIN)/python -m localstack demo

lint: $(STAMP)
	$(BIN)/ruff check .

# The browser test drives Debian's Chromium and chromedriver: install them when missing.
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq </dev/null && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver </dev/null; \
	fi

test: $(STAMP) browser-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest
	API_PORT=$${DEMO_API_PORT:-0} DRAWSOURCE_PORT=$${DEMO_DRAWSOURCE_PORT:-0} EMCOINS_DATA_DIR= \
		$(MAKE) --no-print-directory demo

bench: $(STAMP)
	$(BIN)/python bench/fit.py
	$(BIN)/python bench/e2e.py

# The compose stack on a real Docker engine: build, jobs, scaling, a Redis restart, Flower,
# then `down -v` (deploy/compose_test.py; standard library only, so no install is needed).
.PHONY: compose-test
compose-test:
	$(PYTHON) deploy/compose_test.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .coverage

# Empties the local stack's data folder (EMCOINS_DATA_DIR, default .emcoins/): every job,
# result and metric of `make run` goes. Refused while a stack is running on it.
clean-data: $(STAMP)
	$(BIN)/python -m localstack clean-data
