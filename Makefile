# make test   - everything CI runs: venv, services, the real operator SDK's venv, the whole suite
# make lint   - ruff and mypy --strict
# make fixtures - re-capture the golden wire corpus from real Celery, the seed client and the SDK
# make bench  - benchmarks side by side with the seed client (benchmarks/README.md)
# make demo   - a batch through the fake operator, on an embedded Redis when none is reachable

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SDK_VENV := .interop/sdk

.PHONY: test lint services interop fixtures bench demo clean

test: lint services interop
	$(PY) -m pytest

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

services:
	bash scripts/ensure-services.sh

interop: $(SDK_VENV)/.installed

$(SDK_VENV)/.installed:
	$(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/python -m pip install -q "sandai-operator-sdk==0.6.2" packaging
	touch $@

lint: $(VENV)/.installed
	$(PY) -m ruff check sandai_operator_client sandai tests benchmarks examples
	$(PY) -m mypy

fixtures: services
	$(PYTHON) protocol_fixtures/capture.py all

bench: $(VENV)/.installed services
	$(PY) benchmarks/run.py

demo: $(VENV)/.installed
	$(PY) examples/demo.py

clean:
	rm -rf $(VENV) .interop protocol_fixtures/.venvs benchmarks/.venvs
