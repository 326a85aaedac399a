#!/usr/bin/env bash
# A steady-state GPU step makes the host wait for nothing: the losses and the gradient norm stay on
# the device until a step that reads them (a log step here), and that read is the one host sync.
# Trains STEPS steps with metrics.log_freq FREQ on the GPU and requires metrics.jsonl's host_syncs
# (syncs per step, averaged since the previous log) of the last log to be exactly 1 / FREQ.
# Exits 77 (ctest: skipped) where no GPU is visible.
# usage: check_gpu_syncs.sh GPU_TESTS RUN_TRAIN [RUN_TRAIN ARGS...]
set -u
gpu_tests=$1; run_train=$2; shift 2
. "$(dirname "$0")/skip_without_gpu.sh"
skip_without_gpu "$gpu_tests"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
freq=5
"$run_train" "$@" --training.device cuda --training.steps $((2 * freq)) --metrics.log_freq $freq \
  --job.dump_folder "$dir" > "$dir/log" 2>&1 || { tail -20 "$dir/log"; echo "FAIL: the GPU run failed"; exit 1; }
last=$(grep '"step":'$((2 * freq))'[,}]' "$dir/metrics.jsonl" | grep -o '"host_syncs":[0-9.e-]*' | cut -d: -f2)
want=$(awk -v f=$freq 'BEGIN { printf "%.6f", 1 / f }')
got=$(awk -v x="${last:-nan}" 'BEGIN { printf "%.6f", x }')
grep -E "step +$((2 * freq)) " "$dir/log"
if [ "$got" != "$want" ]; then
  echo "FAIL: host syncs per step over steps $((freq + 1))-$((2 * freq)) = ${last:-none}, want $want (one read per log interval)"
  exit 1
fi
echo "ok: $got host syncs per step (one read every $freq steps)"
