#!/usr/bin/env bash
# CPU benchmark: one Llama 3 debug-model training step (forward, backward, clipping, AdamW),
# titan.cpp against the same model in PyTorch eager float32, side by side in one run, on the
# same core(s). --no-optimizer times forward + backward only.
#   ./scripts/bench_cpu_model.sh [--batch 8] [--seq 2048] [--iters 3] [--threads 1] [--rounds 2] [--no-optimizer]
#                                [--cpu-gemm auto|openblas|blis|onednn]   (training.cpu_gemm for titan.cpp)
# Needs a build (./scripts/build.sh) and, for the baseline, `pip install torch` (dev-time only).
# Rounds alternate titan.cpp and PyTorch so machine noise hits both alike.
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH=8 SEQ=2048 ITERS=3 THREADS=1 ROUNDS=2 EXTRA=() GEMM_ARG=() TORCH_EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --batch) BATCH=$2; shift 2 ;;
    --seq) SEQ=$2; shift 2 ;;
    --iters) ITERS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --no-optimizer) EXTRA+=(--no-optimizer); TORCH_EXTRA+=(--no-optimizer); shift ;;
    --cpu-gemm) EXTRA+=(--cpu-gemm "$2"); GEMM_ARG=(--cpu-gemm "$2"); shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
CPUS=$(seq -s, 0 $((THREADS - 1)))
BENCH=${BUILD_DIR:-build}/apps/bench_model
[ -x "$BENCH" ] || { echo "error: $BENCH not built; run ./scripts/build.sh" >&2; exit 1; }
python3 -c "import torch" 2>/dev/null || { echo "error: PyTorch missing; pip install torch (dev-time only)" >&2; exit 1; }

echo "machine: $(lscpu | sed -n 's/^Model name:\s*//p'), pinned to CPU(s) $CPUS, $THREADS thread(s)"
gemm=$(OPENBLAS_NUM_THREADS=$THREADS taskset -c "$CPUS" "$BENCH" --gemm-info "${GEMM_ARG[@]}")
echo "cpu gemm: $gemm"
lib=$(sed -n '$s/^\([a-z]*\) (kernel \([^);,]*\).*/\1 \2/p' <<<"$gemm")
echo "model: llama3 debugmodel, batch $BATCH x seq $SEQ, $ITERS timed steps per round after 1 warmup, $ROUNDS rounds"
ours=() theirs=()
for r in $(seq "$ROUNDS"); do
  line=$(OPENBLAS_NUM_THREADS=$THREADS taskset -c "$CPUS" "$BENCH" --batch "$BATCH" --seq "$SEQ" --iters "$ITERS" "${EXTRA[@]}")
  echo "  round $r  $line"
  ours+=("$(sed -n 's/.* \([0-9]*\) tokens\/s.*/\1/p' <<<"$line")")
  line=$(taskset -c "$CPUS" python3 scripts/bench/torch_llama3_cpu.py --batch "$BATCH" --seq "$SEQ" --iters "$ITERS" --threads "$THREADS" "${TORCH_EXTRA[@]}")
  echo "  round $r  $line"
  theirs+=("$(sed -n 's/.* \([0-9]*\) tokens\/s.*/\1/p' <<<"$line")")
done
best() { printf '%s\n' "$@" | sort -n | tail -1; }
o=$(best "${ours[@]}") t=$(best "${theirs[@]}")
echo
printf '%-28s %12s\n' "implementation" "tokens/s (best round)"
printf '%-28s %12s\n' "titan.cpp (f32, $lib)" "$o"
printf '%-28s %12s\n' "PyTorch eager f32" "$t"
awk -v o="$o" -v t="$t" 'BEGIN { printf "ratio titan.cpp / PyTorch: %.2f\n", o / t }'
