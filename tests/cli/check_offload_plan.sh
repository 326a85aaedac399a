#!/usr/bin/env bash
# The plan under training.enable_cpu_offload for a GPU run (--dry-run plans for training.device =
# cuda without a GPU): the device holds only the gathered units and the activations, the params,
# grads and AdamW state go to host memory, so the device memory per rank drops by exactly what the
# plan says is offloaded; on the CPU the plan says the path is the same.
# usage: check_offload_plan.sh RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
run_train=$1; config=$2; shift 2
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
for run in on off; do
  flag=(); [ $run = off ] && flag=(--training.enable_cpu_offload)
  "$run_train" --job.config_file "$config" --training.device cuda --dry-run --world-size 2 "${flag[@]}" "$@" \
    --plan-json "$dir/$run.json" > "$dir/$run.log" 2>&1 || { echo "FAIL: plan $run"; cat "$dir/$run.log"; exit 1; }
done
num() { grep -o "\"$2\": *[0-9]*" "$dir/$1.json" | head -1 | grep -o '[0-9]*$'; }
on=$(num on device_total); off=$(num off device_total); host=$(num off offloaded_to_host)
want_host=$(( $(num off params) + $(num off grads) + $(num off optimizer) ))
echo "device bytes per rank: $on without offload, $off with it; offloaded to host: $host"
[ "$off" -eq $(( $(num off gathered) + $(num off activations) )) ] && [ "$host" -eq "$want_host" ] && [ "$off" -lt "$on" ] ||
  { echo "FAIL: offload should leave the gathered units and activations on the device"; exit 1; }
grep -q 'cpu offload  the device holds' "$dir/off.log" || { echo "FAIL: the plan does not show the offload"; exit 1; }
"$run_train" --job.config_file "$config" --training.device cpu --dry-run --training.enable_cpu_offload "$@" 2>&1 |
  grep -q 'cpu offload  training on the CPU: the sharded state is in host memory already' ||
  { echo "FAIL: on the CPU the plan should say the path is the same"; exit 1; }
echo "ok"
