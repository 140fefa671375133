#!/usr/bin/env bash
# What the built distributions must (and must not) hold: the licence and both typed import paths in the
# wheel; no tests, benchmarks or fixtures in the sdist (the suite needs live services and ships with the
# repository). Usage: check-dist-contents.sh DIST_DIR
set -euo pipefail
dist="$1"
wheel=$(ls "$dist"/*.whl)
sdist=$(ls "$dist"/*.tar.gz)
listing=$(python3 -m zipfile -l "$wheel")
for needed in "licenses/LICENSE" "sandai_operator_client/py.typed" "sandai/operator_client/py.typed" \
              "sandai/operator_client/client.py"; do
  grep -q "$needed" <<<"$listing" || { echo "error: the wheel lacks $needed" >&2; exit 1; }
done
contents=$(tar -tzf "$sdist")
if grep -E "/(tests|benchmarks|protocol_fixtures)/" <<<"$contents" >/dev/null; then
  echo "error: the sdist ships tests, benchmarks or fixtures" >&2; exit 1
fi
grep -q "/LICENSE$" <<<"$contents" || { echo "error: the sdist lacks LICENSE" >&2; exit 1; }
echo "dist contents: ok ($(basename "$wheel"), $(basename "$sdist"))"
