# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
INFRA_VENV := .venv-infra
PY := $(VENV)/bin/python

.PHONY: setup demo stack test lint bench clean

setup: $(VENV)/.installed $(INFRA_VENV)/.installed devstack/node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $@

# checkov pins its own dependencies: it lives in a venv of its own (tests/infra calls it).
$(INFRA_VENV)/.installed: requirements-infra.txt
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-infra.txt
	touch $@

devstack/node_modules/.installed: devstack/package.json devstack/package-lock.json
	npm ci --prefix devstack --no-audit --no-fund --loglevel=error
	touch $@

demo: $(VENV)/.installed devstack/node_modules/.installed ## run the local stack, push a sample alert and release ticket, print the outcomes
	$(PY) -m devstack demo

stack: $(VENV)/.installed devstack/node_modules/.installed ## run the local stack until Ctrl-C (queues, simulator, identity endpoint, host)
	$(PY) -m devstack up

bench: $(VENV)/.installed devstack/node_modules/.installed ## the storm benchmark (prints one table)
	$(PY) -m bench.storm

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint ## the whole test suite
	$(PY) -m pytest

clean:
	rm -rf $(VENV) $(INFRA_VENV) devstack/node_modules .pytest_cache .mypy_cache .ruff_cache
