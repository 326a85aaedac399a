#!/usr/bin/env bash
# --job.print_config writes TOML on stdout that loads back to the same config: print, reload the
# printed file, print again, and compare.
# usage: check_print_config.sh RUN_TRAIN [ARGS...]
set -eu
run_train=$1; shift
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$run_train" "$@" --dry-run --job.print_config > "$dir/first.toml"
"$run_train" --job.config_file "$dir/first.toml" --dry-run --job.print_config > "$dir/second.toml"
if ! diff -u "$dir/first.toml" "$dir/second.toml"; then echo "FAIL: the printed config does not load back to itself"; exit 1; fi
grep -q '^\[quantize.linear.float8\]' "$dir/first.toml" || { echo "FAIL: no float8 section"; exit 1; }
echo "ok: print_config round-trips ($(wc -l < "$dir/first.toml") lines)"
