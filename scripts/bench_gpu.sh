#!/usr/bin/env bash
# The GPU check in one command, for a machine with an NVIDIA GPU: the CUDA backend against the
# CPU reference (the ctest label `gpu`: titan_gpu_tests and the 50-step training parity runs),
# then the GEMM and attention benchmarks, and a short summary at the end. Full logs go to
# $OUT (or ./gpu_logs).
#
# On a machine that can build:   scripts/bench_gpu.sh            (builds build-gpu.obj first)
# On a lent GPU machine (no apt): run scripts/gpu_bundle.sh here, carry .devbundle, then there
#                                 scripts/bench_gpu.sh --prebuilt  (unpacks build-gpu/ + .devlibs/)
set -uo pipefail
cd "$(dirname "$0")/.."
logs=${OUT:-gpu_logs}
mkdir -p "$logs"
if [ "${1:-}" = "--prebuilt" ]; then
  [ -f .devbundle/titan_gpu.tar.xz ] && tar -xJf .devbundle/titan_gpu.tar.xz  # from scripts/gpu_bundle.sh
  bin=build-gpu
  # pip's CUDA libraries (cuBLAS, NCCL) where the toolkit's are not on the loader path.
  pylibs=$(python3 -c "import nvidia, os; d = os.path.dirname(nvidia.__path__[0]); print(':'.join(os.path.join(d, 'nvidia', x, 'lib') for x in os.listdir(os.path.join(d, 'nvidia'))))" 2>/dev/null || true)
  export LD_LIBRARY_PATH="$PWD/.devlibs:/usr/local/cuda/lib64:${pylibs}:${LD_LIBRARY_PATH:-}"
else
  cmake -S . -B build-gpu.obj -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu.obj -j"$(nproc)" >/dev/null || exit 1
  bin=build-gpu.obj
  for f in apps/run_train tests/titan_gpu_tests apps/bench_gemm apps/bench_attention apps/bench_model; do
    [ -x "$bin/$(basename "$f")" ] || ln -sf "$PWD/$bin/$f" "$bin/$(basename "$f")"
  done
fi
export OPENBLAS_NUM_THREADS=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$logs/gpu.txt"

step() {  # NAME COMMAND...: runs it with its log under $logs, prints PASS/FAIL and seconds
  local name=$1; shift
  local t0=$SECONDS
  if "$@" > "$logs/$name.log" 2>&1; then echo "PASS $name ($((SECONDS - t0)) s)"; else echo "FAIL $name ($((SECONDS - t0)) s), rc=$?"; tail -20 "$logs/$name.log"; fi
}
step gpu_tests "$bin/titan_gpu_tests" -r compact
step bench_gemm "$bin/bench_gemm"
step bench_attention "$bin/bench_attention"
# Training parity: 50 steps of the debug model, CUDA backend against the CPU, within 1% per step.
parity=(--model.hf_assets_path tests/assets/tokenizer --metrics.log_freq 1
        --training.steps 50 --training.seq_len 128 --training.local_batch_size 4 --job.dump_folder /tmp/titan_gpu_parity)
for precision in float32 bfloat16; do
  step "training_parity_$precision" tests/cli/check_gpu_training.sh "$bin/titan_gpu_tests" 0.01 "$bin/run_train" "${parity[@]}" \
    --job.config_file configs/llama3_debugmodel.toml --training.mixed_precision_param "$precision"
done
step training_parity_float8 tests/cli/check_gpu_training.sh "$bin/titan_gpu_tests" 0.01 "$bin/run_train" "${parity[@]}" \
  --job.config_file configs/llama3_debugmodel_float8.toml --training.mixed_precision_param bfloat16
# Training step throughput (forward, backward, clipping, AdamW) on the GPU: the 1B-shaped flavor
# and an 8B-shaped slice (2 layers, full vocabulary) at seq 8192, bf16 and float8 (emulated casts:
# the FP8 GEMM path is not in the trainer yet), MFU against the H100 SXM bf16 dense peak.
model_step() {  # NAME ARGS...
  local name=$1; shift
  step "model_$name" "$bin/bench_model" --device cuda --peak-tflops 989 --iters 3 --warmup 1 "$@"
}
model_step 1b_bf16 --flavor 1B --batch 1 --seq 8192 --bf16
model_step 8b2_bf16 --flavor 8B --layers 2 --batch 1 --seq 8192 --bf16
model_step 8b2_float8_tensorwise --flavor 8B --layers 2 --batch 1 --seq 8192 --bf16 --float8 tensorwise
model_step 8b2_float8_rowwise --flavor 8B --layers 2 --batch 1 --seq 8192 --bf16 --float8 rowwise
echo "---- summary"
grep -h -E "passed|failed|assertions" "$logs/gpu_tests.log" | tail -3
grep -h -E "^(FAIL|ok|step)" "$logs"/training_parity_*.log 2>/dev/null | tail -6
cat "$logs/bench_gemm.log" "$logs/bench_attention.log" 2>/dev/null | grep -v "^$" | tail -40
grep -h "^titan.cpp" "$logs"/model_*.log 2>/dev/null
