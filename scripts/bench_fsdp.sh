#!/usr/bin/env bash
# FSDP communication overlap: the same training under mpirun -np 2 (shard 2), with prefetch and
# reduce-scatter overlap on (parallelism.fsdp_prefetch = true, the default) and off, in
# alternating rounds. Prints, per model and mode, rank 0's median step time, exposed
# communication (time spent waiting in collectives) and total in-flight communication time, over
# steps 2.. of each run (metrics.jsonl), and the step-time ratio off / on.
#   ./scripts/bench_fsdp.sh [--rounds 2] [--steps 5]
# Models: the debug model (batch 4 x seq 256) and Llama 2 271M (dim 1024, 16 layers; batch 1 x seq 64).
# Needs a build (./scripts/build.sh) and mpirun. Each rank runs one thread.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=2 STEPS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
RUN=${BUILD_DIR:-build}/apps/run_train
[ -x "$RUN" ] || { echo "error: $RUN not built; run ./scripts/build.sh" >&2; exit 1; }
MPI=(mpirun --oversubscribe -np 2 -x OPENBLAS_NUM_THREADS=1 --mca btl_vader_single_copy_mechanism none)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
declare -A model=(
  [debugmodel]="--model.name llama3 --model.flavor debugmodel --training.local_batch_size 4 --training.seq_len 256"
  [llama2_271M]="--model.name llama2 --model.flavor 271M --training.local_batch_size 1 --training.seq_len 64"
)
echo "machine: $(lscpu | sed -n 's/^Model name:\s*//p'), $(nproc) cores; mpirun -np 2, shard 2, 1 thread per rank"
echo "$STEPS steps per run (median of steps 2..$STEPS), $ROUNDS rounds alternating prefetch on/off"
for m in ${MODELS:-debugmodel llama2_271M}; do
  for r in $(seq "$ROUNDS"); do
    for mode in on off; do
      flag=--parallelism.fsdp_prefetch; [ "$mode" = off ] && flag=--no-parallelism.fsdp_prefetch
      # shellcheck disable=SC2086
      "${MPI[@]}" "$RUN" --job.config_file configs/llama3_debugmodel.toml ${model[$m]} --training.steps "$STEPS" \
        --training.cpu_threads 1 --activation_checkpoint.mode none --metrics.log_freq 1 $flag \
        --job.dump_folder "$dir/$m-$mode-$r" > "$dir/$m-$mode-$r.log" 2>&1 ||
        { echo "error: $m ($mode) failed:"; tail -5 "$dir/$m-$mode-$r.log"; exit 1; }
      f="$dir/$m-$mode-$r/metrics.jsonl"
      for key in step_seconds wait_seconds in_flight_seconds; do
        grep -o "\"$key\":[0-9.e-]*" "$f" | tail -n +2 | cut -d: -f2 >> "$dir/$m-$mode.$key"
      done
    done
  done
done
median() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
printf '%-12s %-9s %10s %14s %16s %14s\n' model prefetch "s/step" "exposed comm s" "in-flight comm s" "off/on step"
for m in ${MODELS:-debugmodel llama2_271M}; do
  on=$(median "$dir/$m-on.step_seconds")
  for mode in on off; do
    st=$(median "$dir/$m-$mode.step_seconds")
    printf '%-12s %-9s %10.3f %14.3f %16.3f %14s\n' "$m" "$mode" "$st" "$(median "$dir/$m-$mode.wait_seconds")" \
      "$(median "$dir/$m-$mode.in_flight_seconds")" "$([ "$mode" = off ] && awk -v a="$st" -v b="$on" 'BEGIN {printf "%.3fx", a / b}' || echo -)"
  done
done
