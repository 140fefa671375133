#!/usr/bin/env bash
# Install sandai-operator-sdk==VERSION into the venv DIR (made by the caller). Releases up to 0.4.x depend
# on CaoE, whose python-prctl needs libcap's headers to build; when they cannot be had (no root, no apt),
# the SDK is installed without CaoE, which it imports optionally (a parent-death guard), and says so.
# Usage: install-sdk.sh DIR VERSION
set -euo pipefail
venv="$1"; version="$2"
pip=("$venv/bin/python" -m pip install -q)
case "$version" in
  0.[0-4].*)
    if [ -z "${SANDAI_SDK_WITHOUT_CAOE:-}" ] && bash "$(dirname "$0")/ensure-build-deps.sh"; then
      "${pip[@]}" "sandai-operator-sdk==$version" packaging
    else
      echo "installing sandai-operator-sdk $version without CaoE (libcap headers unavailable)"
      "${pip[@]}" --no-deps "sandai-operator-sdk==$version"
      "${pip[@]}" packaging boto3 celery oss2 pydantic python-dotenv redis requests sentry-sdk watchdog
    fi ;;
  *) "${pip[@]}" "sandai-operator-sdk==$version" packaging ;;
esac
