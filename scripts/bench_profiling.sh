#!/usr/bin/env bash
# What observability costs a training step: the debug model trained with everything off (the
# baseline), with TensorBoard files, with Chrome traces recording every step (profile_freq 1,
# warmup 0, the most expensive schedule) and with memory snapshots every step, in alternating
# rounds so machine noise hits every mode alike. Prints the median step time of each mode (steps
# 3.., from metrics.jsonl) and its ratio to the baseline.
#   ./scripts/bench_profiling.sh [--steps 12] [--rounds 3] [--seq 128] [--batch 4]
# Needs a build (./scripts/build.sh). One rank, one thread, pinned to CPU 0.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=12 ROUNDS=3 SEQ=128 BATCH=4
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --seq) SEQ=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
RUN=${BUILD_DIR:-build}/apps/run_train
[ -x "$RUN" ] || { echo "error: $RUN not built; run ./scripts/build.sh" >&2; exit 1; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
common=(--job.config_file configs/llama3_debugmodel.toml --training.device cpu --training.seq_len "$SEQ"
        --training.local_batch_size "$BATCH" --training.steps "$STEPS" --metrics.log_freq 1 --training.cpu_threads 1)
declare -A flags=(
  [off]=""
  [tensorboard]="--metrics.enable_tensorboard"
  [traces]="--profiling.enable_profiling --profiling.profile_freq 1 --profiling.profiler_warmup 0 --profiling.profiler_active 1"
  [memory_snapshot]="--profiling.enable_memory_snapshot --profiling.profile_freq 1 --profiling.profiler_warmup 0"
)
modes=(off tensorboard traces memory_snapshot)
echo "machine: $(lscpu | sed -n 's/^Model name:\s*//p'), CPU 0, 1 thread"
echo "model: llama3 debugmodel, batch $BATCH x seq $SEQ, $STEPS steps per run (median of steps 3..$STEPS), $ROUNDS rounds"
for r in $(seq "$ROUNDS"); do
  for m in "${modes[@]}"; do
    # shellcheck disable=SC2086
    OPENBLAS_NUM_THREADS=1 taskset -c 0 "$RUN" "${common[@]}" ${flags[$m]} --job.dump_folder "$dir/$m-$r" > "$dir/$m-$r.log" 2>&1 ||
      { echo "error: the $m run failed:"; tail -5 "$dir/$m-$r.log"; exit 1; }
    grep -o '"step_seconds":[0-9.e-]*' "$dir/$m-$r/metrics.jsonl" | tail -n +3 | cut -d: -f2 >> "$dir/$m.times"
  done
done
median() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
base=$(median "$dir/off.times")
printf '%-16s %12s %10s %8s\n' mode "s/step" "vs off" samples
for m in "${modes[@]}"; do
  med=$(median "$dir/$m.times")
  printf '%-16s %12.4f %9.3fx %8d\n' "$m" "$med" "$(awk -v a="$med" -v b="$base" 'BEGIN {print a / b}')" "$(wc -l < "$dir/$m.times")"
done
