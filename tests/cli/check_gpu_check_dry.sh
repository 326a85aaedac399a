#!/usr/bin/env bash
# The GPU device check's plumbing without a GPU (scripts/bench_gpu.sh --dry-run, canned outputs
# from tests/assets/gpu_check): exactly three files come back (preflight, summary, logs archive),
# every step has a summary line, the GEMM and attention ratios are computed; with a budget too small
# for any step, every step is skipped and the three files still come back.
set -eu
script=$1
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
OUT="$dir/full" bash "$script" --dry-run > "$dir/full.log" 2>&1 || { echo "FAIL: dry run"; cat "$dir/full.log"; exit 1; }
[ "$(ls "$dir/full" | wc -l)" -eq 3 ] && [ -s "$dir/full/preflight.txt" ] && [ -s "$dir/full/logs.tar.gz" ] ||
  { echo "FAIL: expected preflight.txt, summary.txt, logs.tar.gz:"; ls -l "$dir/full"; exit 1; }
steps=$(grep -c -E '^[a-z0-9_]+ +PASS ' "$dir/full/summary.txt")
[ "$steps" -eq 22 ] || { echo "FAIL: $steps steps passed, expected 22"; cat "$dir/full/summary.txt"; exit 1; }
grep -q '^ok: 0.200000 host syncs per step' "$dir/full/summary.txt" || { echo "FAIL: the syncs line"; cat "$dir/full/summary.txt"; exit 1; }
grep -q '^ok: the same losses and gradient norms with compile.enable' "$dir/full/summary.txt" || { echo "FAIL: the compile line"; exit 1; }
[ "$(grep -c -E '^(wq/wo|wk/wv|w1/w3|w2|output) .* x0\.9[0-9] \| fp8tw .* x0\.9[0-9] \| fp8rw .* x0\.9[0-9]' "$dir/full/summary.txt")" -eq 5 ] ||
  { echo "FAIL: GEMM ratios"; cat "$dir/full/summary.txt"; exit 1; }
grep -q '^bench_attention: 9.000 ms, torch cudnn 6.500 ms, x0.72 (DRY RUN' "$dir/full/summary.txt" &&
  grep -q '^bench_attention_cudnn: 9.000 ms, torch cudnn 6.500 ms, x0.72' "$dir/full/summary.txt" &&
  grep -q '^bench_attention_cudnn_det: 9.000 ms' "$dir/full/summary.txt" ||
  { echo "FAIL: attention ratios"; cat "$dir/full/summary.txt"; exit 1; }
tar -tzf "$dir/full/logs.tar.gz" | grep -q 'bench_gemm.log' || { echo "FAIL: logs archive"; exit 1; }
BUDGET_S=12 OUT="$dir/none" bash "$script" --dry-run > "$dir/none.log" 2>&1 || { echo "FAIL: budget run"; exit 1; }
[ "$(ls "$dir/none" | wc -l)" -eq 3 ] || { echo "FAIL: files of the budget run"; ls "$dir/none"; exit 1; }
[ "$(grep -c 'SKIP     (budget spent)' "$dir/none/summary.txt")" -eq 22 ] || { echo "FAIL: budget"; cat "$dir/none/summary.txt"; exit 1; }
echo "ok: 3 files, 22 steps, ratios, the syncs and compile lines; a spent budget skips every step"
