# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Python 3.11 (the Functions runtime the app targets): python3.11 if on PATH, else python3; checked
# before any venv is built. Another interpreter: make PYTHON=/path/to/python3.11 demo
PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
VENV := .venv
INFRA_VENV := .venv-infra
PY := $(VENV)/bin/python

.PHONY: setup demo stack test lint bench clean

setup: $(VENV)/.installed $(INFRA_VENV)/.installed devstack/node_modules/.installed

define check_python
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || { \
	  echo "mde-containment needs Python 3.11, but '$(PYTHON)' is $$(command -v $(PYTHON) >/dev/null && $(PYTHON) --version 2>&1 || echo 'not found')." >&2; \
	  echo "Install Python 3.11, or choose an interpreter: make PYTHON=/path/to/python3.11 $(or $(MAKECMDGOALS),setup)" >&2; \
	  exit 1; }
endef

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(check_python)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $@

# checkov pins its own dependencies: it lives in a venv of its own (tests/infra calls it).
$(INFRA_VENV)/.installed: requirements-infra.txt
	$(check_python)
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-infra.txt
	touch $@

devstack/node_modules/.installed: devstack/package.json devstack/package-lock.json
	@command -v npm >/dev/null || { echo "npm is required: Azurite, the Azure Storage emulator, comes from npm" >&2; exit 1; }
	npm ci --prefix devstack --no-audit --no-fund --loglevel=error
	touch $@

demo: $(VENV)/.installed devstack/node_modules/.installed ## run the local stack, push seven sample messages, print every result
	$(PY) -m devstack demo

stack: $(VENV)/.installed devstack/node_modules/.installed ## run the local stack until Ctrl-C (queues, simulator, identity endpoint, host)
	$(PY) -m devstack up

bench: $(VENV)/.installed devstack/node_modules/.installed ## the benchmark: storms, scale-out, burst, quiet-system latency (about 20 minutes on 2 cores; prints one table)
	$(PY) -m bench.storm

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint ## the whole test suite
	$(PY) -m pytest

clean:
	rm -rf $(VENV) $(INFRA_VENV) devstack/node_modules .pytest_cache .mypy_cache .ruff_cache
