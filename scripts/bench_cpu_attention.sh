#!/usr/bin/env bash
# CPU attention benchmark: titan.cpp's causal GQA attention (ops::attention + attention_backward,
# float32) against PyTorch's F.scaled_dot_product_attention(is_causal=True), side by side in one
# run, pinned to one core with one thread each. Prints a table of CPU ms and ratios per shape.
#   ./scripts/bench_cpu_attention.sh [--iters 2] [--rounds 2] [--cpu 0] [--quick] [--shapes "S:H:KV:D S:H:KV:D ..."]
# Needs a build (./scripts/build.sh or cmake --build build --target bench_attention_cpu) and, for
# the baseline, PyTorch (dev-time only; PYTHON=/path/to/python picks the interpreter).
# Rounds alternate titan.cpp and PyTorch so machine noise hits both alike; each side reports the
# best of --iters after a warm-up, in CPU time of its process, and the best round is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=2 ROUNDS=2 CPU=0 PYTHON=${PYTHON:-python3}
# seq:heads:kv_heads:head_dim, batch 1. 2048:16:16:16 is the debug model's attention (dim 256,
# 16 heads, head_dim 16); the others are Llama-3-like heads at head_dim 64 and 128.
SHAPES="2048:16:16:16 2048:8:4:64 2048:8:4:128 8192:16:16:16 8192:8:4:64 8192:8:4:128"
while [ $# -gt 0 ]; do
  case "$1" in
    --iters) ITERS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --cpu) CPU=$2; shift 2 ;;
    --shapes) SHAPES=$2; shift 2 ;;
    --quick) SHAPES="2048:16:16:16 2048:8:4:64 2048:8:4:128"; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
BENCH=${BUILD_DIR:-build}/apps/bench_attention_cpu
[ -x "$BENCH" ] || { echo "error: $BENCH not built; run cmake --build build --target bench_attention_cpu" >&2; exit 1; }
"$PYTHON" -c "import torch" 2>/dev/null || { echo "error: PyTorch missing for $PYTHON; pip install torch (dev-time only) or set PYTHON" >&2; exit 1; }

echo "machine: $(lscpu | sed -n 's/^Model name:\s*//p'), pinned to CPU $CPU, 1 thread; torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"
echo "causal GQA attention, float32, batch 1; best of $ITERS iterations after 1 warm-up, best of $ROUNDS rounds; CPU ms"
printf '%-22s %9s %9s %9s %9s %9s %9s %8s\n' "seq:H:KV:D" "ours fwd" "ours bwd" "torch fwd" "torch bwd" "fwd x" "bwd x" "total x"
field() { sed -n "s/.* $1 \([0-9.]*\) ms.*/\1/p" <<<"$2"; }
for shape in $SHAPES; do
  IFS=: read -r S H KV D <<<"$shape"
  of=1e30 ob=1e30 tf=1e30 tb=1e30
  for _ in $(seq "$ROUNDS"); do
    line=$(OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c "$CPU" "$BENCH" --seq "$S" --heads "$H" --kv-heads "$KV" --head-dim "$D" --iters "$ITERS")
    of=$(awk -v a="$of" -v b="$(field fwd "$line")" 'BEGIN { print (b < a ? b : a) }')
    ob=$(awk -v a="$ob" -v b="$(field bwd "$line")" 'BEGIN { print (b < a ? b : a) }')
    line=$(OMP_NUM_THREADS=1 taskset -c "$CPU" "$PYTHON" scripts/bench/torch_sdpa_cpu.py --seq "$S" --heads "$H" --kv-heads "$KV" --head-dim "$D" --iters "$ITERS" --threads 1)
    tf=$(awk -v a="$tf" -v b="$(field fwd "$line")" 'BEGIN { print (b < a ? b : a) }')
    tb=$(awk -v a="$tb" -v b="$(field bwd "$line")" 'BEGIN { print (b < a ? b : a) }')
  done
  # ratios: PyTorch time / ours (> 1 means titan.cpp is faster)
  awk -v s="$shape" -v of="$of" -v ob="$ob" -v tf="$tf" -v tb="$tb" \
    'BEGIN { printf "%-22s %9.1f %9.1f %9.1f %9.1f %9.2f %9.2f %8.2f\n", s, of, ob, tf, tb, tf / of, tb / ob, (tf + tb) / (of + ob) }'
done
echo "x = PyTorch ms / titan.cpp ms (> 1: titan.cpp faster)"
