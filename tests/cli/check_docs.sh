#!/usr/bin/env bash
# docs/config.md must be exactly what the schema generates (run_train --config-reference).
# To refresh it: build/apps/run_train --config-reference > docs/config.md
set -eu
run_train=$1; doc=$2
if ! diff -u "$doc" <("$run_train" --config-reference); then
  echo "FAIL: $doc is out of date; regenerate it with: run_train --config-reference > docs/config.md"
  exit 1
fi
echo "ok: $doc matches the schema"
