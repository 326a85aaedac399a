#!/usr/bin/env bash
# The plan's communication per step (--plan-json comm_per_step_bytes) against what a run counts
# (metrics.jsonl), on FSDP shard 2 x TP 2: all-gather bytes (FSDP units + sequence-parallel
# activations) and reduce-scatter bytes must agree within 1% at step 2. With EXPECT_FLOAT8_WIRE set
# (a float8 config without FSDP float8 all-gather), the TP all-gathers must also be fewer bytes than
# in the same run's plan without float8: the activations travel as e4m3.
# usage: check_tp_comm.sh MPIRUN -- RUN_TRAIN [ARGS...]
set -eu
mpirun=(); while [ "$1" != "--" ]; do mpirun+=("$1"); shift; done; shift
run_train=$1; shift
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
args=("$@" --training.steps 2 --metrics.log_freq 1 --parallelism.tensor_parallel_degree 2 --job.dump_folder "$dir/run")
"$run_train" "${args[@]}" --dry-run --world-size 4 --plan-json "$dir/plan.json" > "$dir/plan.log" 2>&1 ||
  { echo "FAIL: the dry run"; cat "$dir/plan.log"; exit 1; }
"${mpirun[@]}" -np 4 "$run_train" "${args[@]}" > "$dir/run.log" 2>&1 || { echo "FAIL: the run"; cat "$dir/run.log"; exit 1; }
plan() { grep -o "\"$1\": *[0-9]*" "$dir/plan.json" | head -1 | grep -o "[0-9]*$"; }
measured() { tail -1 "$dir/run/metrics.jsonl" | grep -o "\"$1\": *[0-9]*" | grep -o "[0-9]*$"; }
ag_plan=$(( $(plan fsdp_all_gather) + $(plan tp_all_gather) )); ag_run=$(measured all_gather_bytes)
rs_plan=$(( $(plan fsdp_reduce_scatter) + $(plan tp_reduce_scatter) )); rs_run=$(measured reduce_scatter_bytes)
echo "all-gather: plan $ag_plan, measured $ag_run; reduce-scatter: plan $rs_plan, measured $rs_run"
if [ -n "${EXPECT_FLOAT8_WIRE:-}" ]; then
  "$run_train" "${args[@]}" --model.converters= --dry-run --world-size 4 --plan-json "$dir/plan_hp.json" > "$dir/plan_hp.log" 2>&1 ||
    { echo "FAIL: the dry run without float8"; cat "$dir/plan_hp.log"; exit 1; }
  hp=$(grep -o '"tp_all_gather": *[0-9]*' "$dir/plan_hp.json" | grep -o '[0-9]*$')
  echo "TP all-gather bytes: float8 $(plan tp_all_gather), high precision $hp"
  [ "$(plan tp_all_gather)" -lt "$hp" ] || { echo "FAIL: no float8 on the TP wire"; exit 1; }
fi
[ "$(plan tp_all_gather)" -gt 0 ] || { echo "FAIL: the plan counts no TP all-gather"; exit 1; }
awk -v a="$ag_plan" -v b="$ag_run" -v c="$rs_plan" -v d="$rs_run" 'function off(x, y) { return (x > y ? x - y : y - x) / y }
  BEGIN { if (b == 0 || d == 0 || off(a, b) > 0.01 || off(c, d) > 0.01) { print "FAIL: plan and run differ by more than 1%"; exit 1 }; print "ok" }'
