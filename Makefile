# make test   - the whole suite: venv, services, the real operator SDK's venv
# make test-compat - the compatibility matrix: SDK 0.4.0 and 0.6.2 x Redis 7 / Redis 6.2 / Valkey / RabbitMQ
# make lint   - ruff and mypy --strict
# make fixtures - re-capture the golden wire corpus from real Celery, the seed client and the SDK
# make bench  - benchmarks side by side with the seed client (benchmarks/README.md)
# make demo   - a batch through the fake operator, on an embedded Redis when none is reachable

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SDK_VENV := .interop/sdk-0.6.2
COMPAT_SDKS := 0.4.0 0.6.2

.PHONY: test test-compat lint services interop fixtures bench demo clean

test: lint services interop
	$(PY) -m pytest

test-compat: $(VENV)/.installed services $(foreach v,$(COMPAT_SDKS),.interop/sdk-$(v)/.installed)
	$(PY) -m pytest -m compat tests/compat

# an SDK release's own venv; releases up to 0.4.x need libcap's headers to build python-prctl
.interop/sdk-%/.installed:
	case "$*" in 0.[0-4].*) bash scripts/ensure-build-deps.sh ;; esac
	$(PYTHON) -m venv .interop/sdk-$*
	.interop/sdk-$*/bin/python -m pip install -q "sandai-operator-sdk==$*" packaging
	touch $@

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

services:
	bash scripts/ensure-services.sh

interop: $(SDK_VENV)/.installed

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
