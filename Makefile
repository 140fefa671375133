# make test   - the whole suite: venv, services, the real operator SDK's venv
# make test-compat - the compatibility matrix: SDK 0.4.0 and 0.6.2 x Redis 7 / Redis 6.2 / Valkey / RabbitMQ
# make lint   - ruff check, ruff format --check and mypy --strict
# make docs   - the documentation site (mkdocs --strict) into site/
# make dist   - wheel and sdist, twine check --strict, the wheel installed in a clean venv and type-checked
# make fixtures - re-capture the golden wire corpus from real Celery, the seed client and the SDK
# make bench  - benchmarks side by side with the seed client (benchmarks/README.md)
# make demo   - a batch through the fake operator, on an embedded Redis when none is reachable

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SDK_VENV := .interop/sdk-0.6.2
COMPAT_SDKS := 0.4.0 0.6.2

.PHONY: test test-compat lint docs dist services interop fixtures bench demo clean

test: lint services interop
	$(PY) -m pytest

test-compat: $(VENV)/.installed services $(foreach v,$(COMPAT_SDKS),.interop/sdk-$(v)/.installed)
	$(PY) -m pytest -m compat tests/compat

# an SDK release's own venv (scripts/install-sdk.sh: releases up to 0.4.x want libcap's headers)
.interop/sdk-%/.installed:
	$(PYTHON) -m venv .interop/sdk-$*
	bash scripts/install-sdk.sh .interop/sdk-$* $*
	touch $@

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e . --group dev
	touch $@

services:
	bash scripts/ensure-services.sh

interop: $(SDK_VENV)/.installed

LINTED := sandai_operator_client sandai tests benchmarks examples protocol_fixtures/capture.py

lint: $(VENV)/.installed
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)
	$(PY) -m mypy

docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# the package as a user gets it: built, checked, installed in a clean venv, imported, type-checked
dist: $(VENV)/.installed
	rm -rf dist .dist-check
	$(PY) -m build --outdir dist . >/dev/null
	$(PY) -m twine check --strict dist/*
	$(PYTHON) -m venv .dist-check
	.dist-check/bin/python -m pip install -q dist/*.whl "mypy==2.4.1"
	cd .dist-check && bin/python -c "import sandai.operator_client.client, sandai_operator_client as s; print('import ok', s.__version__)"
	.dist-check/bin/sandai-operator --version
	cd .dist-check && bin/python -m mypy --strict --no-incremental ../tests/typing/user_program.py
	bash scripts/check-dist-contents.sh dist
	bash scripts/smoke-pythons.sh dist/*.whl

fixtures: services
	$(PYTHON) protocol_fixtures/capture.py all

bench: $(VENV)/.installed services
	$(PY) benchmarks/run.py

demo: $(VENV)/.installed
	$(PY) examples/demo.py

clean:
	rm -rf $(VENV) .interop protocol_fixtures/.venvs benchmarks/.venvs site dist .dist-check
