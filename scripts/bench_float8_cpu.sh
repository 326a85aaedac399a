#!/usr/bin/env bash
# CPU cost of float8 emulation: the same debug-model training step with and without float8 linears
# (every Linear but `output` converted), alternating in one run, on one pinned core.
#   ./scripts/bench_float8_cpu.sh [--batch 8] [--seq 512] [--iters 3] [--rounds 2] [--recipe tensorwise]
# On the CPU float8 is emulation (cast + dequantize around float32 GEMMs), so it only costs time;
# this measures that cost. The speedup of real FP8 GEMMs is measured on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH=8 SEQ=512 ITERS=3 ROUNDS=2 RECIPE=tensorwise
while [ $# -gt 0 ]; do
  case "$1" in
    --batch) BATCH=$2; shift 2 ;;
    --seq) SEQ=$2; shift 2 ;;
    --iters) ITERS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --recipe) RECIPE=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
BENCH=${BUILD_DIR:-build}/apps/bench_model
[ -x "$BENCH" ] || { echo "error: $BENCH not built; run ./scripts/build.sh" >&2; exit 1; }
echo "machine: $(lscpu | sed -n 's/^Model name:\s*//p'), CPU 0, 1 thread; debugmodel batch $BATCH x seq $SEQ"
base=() f8=()
for r in $(seq "$ROUNDS"); do
  line=$(OPENBLAS_NUM_THREADS=1 taskset -c 0 "$BENCH" --batch "$BATCH" --seq "$SEQ" --iters "$ITERS")
  echo "  round $r  $line"; base+=("$(sed -n 's/.*best \([0-9.]*\) s.*/\1/p' <<<"$line")")
  line=$(OPENBLAS_NUM_THREADS=1 taskset -c 0 "$BENCH" --batch "$BATCH" --seq "$SEQ" --iters "$ITERS" --float8 "$RECIPE")
  echo "  round $r  $line"; f8+=("$(sed -n 's/.*best \([0-9.]*\) s.*/\1/p' <<<"$line")")
done
best() { printf '%s\n' "$@" | sort -g | head -1; }
b=$(best "${base[@]}") f=$(best "${f8[@]}")
printf '\n%-34s %10s\n' "step" "best s/step"
printf '%-34s %10s\n' "float32 linears" "$b"
printf '%-34s %10s\n' "float8 $RECIPE (emulated)" "$f"
awk -v b="$b" -v f="$f" 'BEGIN { printf "float8 emulation overhead: %.0f%%\n", 100 * (f - b) / b }'
