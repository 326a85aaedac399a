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
# With float8: every Linear's fqn, shape, float8 flag and reason.
"$@" "$run_train" --job.config_file "$config" --dry-run --plan-json "$dir/f8.json" --model.converters quantize.linear.float8 \
  --quantize.linear.float8.filter_fqns output --parallelism.data_parallel_replicate_degree 1 >/dev/null
flat=$(tr -d ' \n' < "$dir/f8.json")
grep -q "{\"float8\":false,\"fqn\":\"output\",\"reason\":\"filteredbyname('output')\",\"shape\":\[2048,256\]}" <<<"$flat" \
  || { echo "FAIL: output should be listed as filtered"; cat "$dir/f8.json"; exit 1; }
grep -q '{"float8":true,"fqn":"layers.0.attention.wq","reason":"converted","shape":\[256,256\]}' <<<"$flat" \
  || { echo "FAIL: layers.0.attention.wq should be listed as converted"; exit 1; }
echo "ok"; cat "$dir/plan.json"
