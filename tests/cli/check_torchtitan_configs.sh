#!/usr/bin/env bash
# TorchTitan's own Llama configs from its history (tests/assets/torchtitan/configs, each with the
# commit it came from) load unchanged: `run_train --dry-run` accepts every one. Those that ask for
# tensor parallelism (70B, 405B: TP 8) run at the world size TorchTitan trains them on (64 and 128
# ranks) and must print the 3D mesh and the memory per rank.
# usage: check_torchtitan_configs.sh RUN_TRAIN CONFIG_DIR
set -u
run_train=$1; dir=$2
fail=0; n=0; tp_configs=0
for f in "$dir"/*.toml; do
  n=$((n + 1))
  world=()
  if grep -Eq '^(tensor_parallel_degree|sequence_parallel_degree) *= *([2-9]|[1-9][0-9]+)' "$f"; then
    tp_configs=$((tp_configs + 1))
    case "$f" in *405b*) world=(--world-size 128) ;; *) world=(--world-size 64) ;; esac
  fi
  out=$("$run_train" --job.config_file "$f" --dry-run "${world[@]}" 2>&1); rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "FAIL $(basename "$f") (rc $rc):"; echo "$out" | grep -v ' warning ' ; fail=1
  elif [ ${#world[@]} -gt 0 ] && ! { grep -Eq 'mesh \(replicate 1, shard [0-9]+, tp 8\)' <<< "$out" && grep -q 'memory/rank' <<< "$out"; }; then
    echo "FAIL $(basename "$f"): no 3D mesh with tp 8 or no memory per rank in the plan:"; echo "$out"; fail=1
  else
    echo "ok   $(basename "$f") ${world[*]} ($(grep -c ' warning ' <<< "$out") warnings)$(grep -o 'mesh (.*' <<< "$out" | head -1 | sed 's/^/: /')"
  fi
done
[ "$tp_configs" -ge 2 ] || { echo "FAIL: expected the 70B and 405B tensor-parallel configs in $dir"; exit 1; }
[ "$n" -ge 8 ] || { echo "FAIL: only $n configs in $dir"; exit 1; }
exit $fail
