#!/usr/bin/env bash
# TorchTitan's own Llama configs from its history (tests/assets/torchtitan/configs, each with the
# commit it came from) load unchanged: `run_train --dry-run` accepts every one, except those that
# ask for tensor parallelism, which stop with exactly one error line naming it.
# usage: check_torchtitan_configs.sh RUN_TRAIN CONFIG_DIR
set -u
run_train=$1; dir=$2
fail=0; n=0
for f in "$dir"/*.toml; do
  n=$((n + 1))
  err=$("$run_train" --job.config_file "$f" --dry-run 2>&1 >/dev/null); rc=$?
  if grep -Eq '^(tensor_parallel_degree|sequence_parallel_degree) *= *([2-9]|[1-9][0-9]+)' "$f"; then
    lines=$(grep -c '^error: ' <<< "$err")
    if [ "$rc" -ne 2 ] || [ "$lines" -ne 1 ] || ! grep -q 'tensor_parallel' <<< "$err"; then
      echo "FAIL $(basename "$f"): a tensor-parallel config must stop with one error line (rc $rc):"; echo "$err"; fail=1
    else
      echo "ok   $(basename "$f"): $(grep '^error: ' <<< "$err")"
    fi
  elif [ "$rc" -ne 0 ]; then
    echo "FAIL $(basename "$f") (rc $rc):"; echo "$err" | grep -v ' warning ' ; fail=1
  else
    echo "ok   $(basename "$f") ($(grep -c ' warning ' <<< "$err") warnings)"
  fi
done
[ "$n" -ge 8 ] || { echo "FAIL: only $n configs in $dir"; exit 1; }
exit $fail
