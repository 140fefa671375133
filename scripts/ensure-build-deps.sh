#!/usr/bin/env bash
# What building the older operator SDKs' dependencies needs: libcap's headers for python-prctl
# (sandai-operator-sdk <= 0.4.x). Installed as root with apt-get when missing; fails loudly otherwise.
set -euo pipefail

if [ -e /usr/include/sys/capability.h ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "error: libcap-dev is not installed and cannot be installed here (need root and apt-get)" >&2; exit 1
fi
echo "installing libcap-dev ..."
DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libcap-dev >/dev/null
