# Stepwise: `make run` starts the product on the embedded default, `make test` runs every test.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
FRONTEND_BUILT := frontend/dist/.vite/manifest.json
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test test-python test-frontend lint format bench soak install frontend migrate clean chromium

$(INSTALLED): pyproject.toml client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet -e './client[progress]'  # the Python client (client/README.md)
	touch $@

install: $(INSTALLED)

frontend/node_modules/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch $@

$(FRONTEND_BUILT): frontend/node_modules/.installed $(shell find frontend/src -type f 2>/dev/null) frontend/index.html frontend/vite.config.ts
	cd frontend && npm run build

frontend: $(FRONTEND_BUILT)

migrate: install
	$(PY) manage.py migrate --noinput

run: install frontend migrate
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py seed_demo --if-empty
	$(PY) -m demo.run

test: test-python test-frontend

# The browser tests need the Debian chromium: installed here when root, else the command to run.
chromium:
	scripts/ensure-chromium

test-python: install frontend chromium
	DEBUG=1 $(PY) manage.py makemigrations --check --dry-run  # DEBUG=1: no SECRET_KEY needed
	STEPWISE_BROKER_DIR=var/test-broker $(PY) -m pytest

test-frontend: frontend/node_modules/.installed
	cd frontend && npm test

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(PY) bench/import_bench.py
	$(PY) bench/selector_throughput.py
	$(PY) bench/queue_fill.py
	$(PY) bench/queue_load.py
	$(PY) bench/export_bench.py
	$(PY) bench/train_eval_scale.py

# Faults injected under load on a throw-away PostgreSQL and Redis (~3 min; CI runs it);
# PRESET=full gives the README's table (~17 min).
soak: install
	$(PY) bench/chaos_soak.py --preset $(or $(PRESET),short)

clean:
	rm -rf var/ frontend/dist test-artifacts
