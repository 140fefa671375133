#!/usr/bin/env bash
# The wheel on every Python the package claims (3.9 ... 3.13): installed in a fresh venv, imported through
# both paths, its console script run. A version that is not installed here is named, not skipped silently.
# Usage: smoke-pythons.sh WHEEL
set -euo pipefail
wheel=$(realpath "$1")
missing=()
for version in 3.9 3.10 3.11 3.12 3.13; do
  python=$(command -v "python$version" || true)
  if [ -z "$python" ] || ! "$python" -c "" 2>/dev/null; then  # a pyenv shim not selected: the install itself
    python=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$version".*/bin/python 2>/dev/null | tail -1 || true)
  fi
  if [ -z "$python" ] || ! "$python" -c "" 2>/dev/null; then missing+=("$version"); continue; fi
  venv=$(mktemp -d)/venv
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q "$wheel" 2>/dev/null
  "$venv/bin/python" -c "import sandai.operator_client.client, sandai_operator_client as s; s.create_client('x', 'v1')"
  echo "python $version: $("$venv/bin/sandai-operator" --version)"
  rm -rf "$(dirname "$venv")"
done
if [ ${#missing[@]} -gt 0 ]; then echo "not installed here, not checked: python ${missing[*]}"; fi
