#!/usr/bin/env bash
# --plan-json writes the plan as JSON with the resolved mesh and the model size.
# usage: check_plan_json.sh RUN_TRAIN CONFIG [MPIRUN...]
set -eu
run_train=$1; config=$2; shift 2
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$@" "$run_train" --job.config_file "$config" --dry-run --plan-json "$dir/plan.json" \
  --parallelism.data_parallel_replicate_degree 1 >/dev/null
grep -q '"params": 6163712' "$dir/plan.json" || { echo "FAIL: params"; cat "$dir/plan.json"; exit 1; }
grep -q '"flavor": "debugmodel"' "$dir/plan.json" || { echo "FAIL: flavor"; exit 1; }
grep -q '"world_size"' "$dir/plan.json" || { echo "FAIL: world_size"; exit 1; }
echo "ok"; cat "$dir/plan.json"
