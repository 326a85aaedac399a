#!/usr/bin/env bash
# The GPU device check in one command (docs/cuda.md, "The device check"): the CUDA backend against
# the CPU reference, then titan.cpp's GEMM/attention/step benchmarks beside PyTorch on the same
# chip, as a short table. Made to fit one lent-GPU call: every step runs under `timeout`, the whole
# check under an overall budget (BUDGET_S, default 360 s: with the machine's start-up, a rerun still
# fits in a 15-minute lease), and
# exactly three files come back in $OUT (default ./gpu_logs):
#   preflight.txt   driver, GPU, CUDA runtime, which libcublasLt/libnccl/libcudnn each binary loads
#   summary.txt     one line per step (PASS/FAIL/TIMEOUT/SKIP, seconds), then the figures and the
#                   titan.cpp / PyTorch ratios
#   logs.tar.gz     every step's full log
#
#   scripts/bench_gpu.sh              build here (build-gpu.obj), then check
#   scripts/bench_gpu.sh --prebuilt   on a lent GPU machine: unpack .devbundle (scripts/gpu_bundle.sh,
#                                     which also carries the CPU reference runs made where it built)
#   scripts/bench_gpu.sh --dry-run    no GPU needed: the same steps, files and summary with every GPU
#                                     command replaced by canned output (tests/assets/gpu_check),
#                                     so the plumbing is tested in CI
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mode=build
case "${1:-}" in
  --prebuilt) mode=prebuilt ;;
  --dry-run) mode=dry ;;
  "") ;;
  *) echo "usage: $0 [--prebuilt | --dry-run]" >&2; exit 2 ;;
esac
out=${OUT:-gpu_logs}
mkdir -p "$out"
out=$(cd "$out" && pwd)
logs=$(mktemp -d)
budget=${BUDGET_S:-360}
start=$SECONDS
summary="$out/summary.txt"
preflight="$out/preflight.txt"
: > "$summary"
finish() {  # the logs travel as one archive, whatever happened
  tar -czf "$out/logs.tar.gz" -C "$logs" --exclude=.bin . 2>/dev/null
  rm -rf "$logs"
}
trap finish EXIT

# ---- binaries and the libraries only they see ------------------------------------------------
libs=""
case $mode in
  prebuilt)
    [ -f .devbundle/titan_gpu.tar.xz ] && tar -xJf .devbundle/titan_gpu.tar.xz
    bin=$root/build-gpu
    # The bundle's libraries and pip's CUDA ones (cuBLAS, cuDNN, NCCL), for titan's binaries only:
    # grep, awk and python keep the system's.
    pylibs=$(python3 -c "import nvidia, os; d = os.path.dirname(nvidia.__path__[0]); print(':'.join(os.path.join(d, 'nvidia', x, 'lib') for x in os.listdir(os.path.join(d, 'nvidia'))))" 2>/dev/null || true)
    libs="$root/.devlibs:/usr/local/cuda/lib64${pylibs:+:$pylibs}"
    refs=$root/.devbundle/ref ;;
  build)
    cmake -S . -B build-gpu.obj -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu.obj -j"$(nproc)" >/dev/null || exit 1
    bin=$root/build-gpu.obj/bin
    mkdir -p "$bin"
    for f in apps/run_train tests/titan_gpu_tests apps/bench_gemm apps/bench_attention apps/bench_model; do
      ln -sf "$root/build-gpu.obj/$f" "$bin/$(basename "$f")"
    done
    refs="" ;;
  dry)
    bin=$root/tests/assets/gpu_check  # canned outputs stand in for the binaries
    refs="" ;;
esac
# Wrappers: titan's binaries see the bundled libraries, nothing else does (grep, awk, python).
wrap=$logs/.bin
mkdir -p "$wrap"
for b in run_train titan_gpu_tests bench_gemm bench_attention bench_model; do
  if [ $mode = dry ]; then
    printf '#!/bin/sh\ncat "%s/%s.txt" 2>/dev/null || echo "dry run: %s $*"\n' "$bin" "$b" "$b" > "$wrap/$b"
  else
    # No empty entries in the search path (an empty one means the current directory).
    printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" exec "%s/%s" "$@"\n' "$libs${LD_LIBRARY_PATH:+${libs:+:}$LD_LIBRARY_PATH}" "$bin" "$b" > "$wrap/$b"
  fi
  chmod +x "$wrap/$b"
done
export mode

# ---- preflight -----------------------------------------------------------------------------
{
  echo "device check $(date -u +%FT%TZ), mode $mode, budget ${budget}s"
  if [ $mode = dry ]; then
    echo "dry run: no GPU queried"
  else
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || echo "nvidia-smi failed"
    nvidia-smi | grep -o 'CUDA Version: [0-9.]*' || true
    python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version())" 2>/dev/null || echo "torch: not importable"
  fi
  missing=0
  for b in run_train titan_gpu_tests bench_gemm bench_attention bench_model; do
    if [ $mode = dry ]; then echo "$b: (dry run)"; continue; fi
    if [ ! -x "$bin/$b" ]; then echo "$b: MISSING binary $bin/$b"; missing=1; continue; fi
    resolved=$(LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+${libs:+:}$LD_LIBRARY_PATH}" ldd "$bin/$b" 2>&1)
    echo "$b: $(grep -E 'libcudart|libcublasLt|libnccl|libcudnn' <<< "$resolved" | awk '{ printf "%s -> %s  ", $1, $3 }')"
    if grep -q 'not found' <<< "$resolved"; then
      echo "  MISSING: $(grep 'not found' <<< "$resolved" | awk '{ print $1 }' | tr '\n' ' ')"
      missing=1
    fi
  done
  echo "missing=$missing"
} > "$preflight" 2>&1
cat "$preflight"
if grep -q '^missing=1' "$preflight"; then
  echo "STOP preflight: a binary lacks a library (see preflight.txt)" | tee -a "$summary"
  exit 1
fi

# ---- steps ---------------------------------------------------------------------------------
# step NAME CAP_S COMMAND...: runs COMMAND (a shell string) under `timeout`, at most CAP_S and
# never past the overall budget (10 s kept for the summary); one summary line either way.
step() {
  local name=$1 cap=$2; shift 2
  local left=$((budget - (SECONDS - start) - 10))
  if [ "$left" -lt 5 ]; then printf "%-34s SKIP     (budget spent)\n" "$name" | tee -a "$summary"; return 0; fi
  [ "$cap" -gt "$left" ] && cap=$left
  local t0=$SECONDS rc
  timeout --kill-after=5 "$cap" bash -c "$*" > "$logs/$name.log" 2>&1
  rc=$?
  local status=PASS
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && status=TIMEOUT
  [ $rc -ne 0 ] && [ $status = PASS ] && status="FAIL rc=$rc"
  printf "%-34s %-8s %4d s (cap %d s)\n" "$name" "$status" $((SECONDS - t0)) "$cap" | tee -a "$summary"
  return 0
}

export OPENBLAS_NUM_THREADS=1
threads=$(nproc 2>/dev/null || echo 1)
# GPU unit tests by tag, each its own process, synchronous launches (an error names its kernel),
# cuBLASLt's error log on.
gpu_env="CUDA_LAUNCH_BLOCKING=1 CUBLASLT_LOG_LEVEL=1"
step gpu_tests_gemm 60 "$gpu_env $wrap/titan_gpu_tests '[gemm]' -r compact"
step gpu_tests_float8 60 "$gpu_env $wrap/titan_gpu_tests '[float8]~[gemm]' -r compact"
step gpu_tests_attention 90 "$gpu_env $wrap/titan_gpu_tests '[attention]~[cudnn]~[long]' -r compact"
step gpu_tests_other 90 "$gpu_env $wrap/titan_gpu_tests '[gpu]~[gemm]~[float8]~[attention]~[graph]' -r compact"
# CUDA graphs cannot be captured with synchronous launches: their tests run without them.
step gpu_tests_graph 60 "CUBLASLT_LOG_LEVEL=1 $wrap/titan_gpu_tests '[graph]' -r compact"
# Out-of-bounds and misaligned accesses in the attention kernels (the ones with hand-made tiling).
if [ $mode = dry ] || command -v compute-sanitizer >/dev/null; then
  step memcheck_attention 120 "if [ \$mode = dry ]; then echo 'dry run: compute-sanitizer'; else LD_LIBRARY_PATH='$libs' compute-sanitizer --tool memcheck --error-exitcode 1 $bin/titan_gpu_tests 'attention: more shapes*' -r compact; fi"
  # The kernels of the sync-free step (cross-entropy's device mean, multi-tensor clipping, the
  # error flags) and the pass-saving ones (fused residual add + RMSNorm, one-pass add, casts
  # that fold the amax), written without a GPU: small tests, so memcheck is cheap here.
  step memcheck_step_kernels 120 "if [ \$mode = dry ]; then echo 'dry run: compute-sanitizer'; else LD_LIBRARY_PATH='$libs' compute-sanitizer --tool memcheck --error-exitcode 1 $bin/titan_gpu_tests 'cuda cross_entropy*,cuda ops: gradient clipping*,cuda ops: the flags*,cuda ops: one-pass add*,float8 cast with a given scale measures*' -r compact; fi"
else
  printf "%-34s SKIP     (no compute-sanitizer)\n" memcheck_attention memcheck_step_kernels | tee -a "$summary"
fi
# Training parity against the carried CPU reference runs (50 debug-model steps; see docs/cuda.md
# for the tolerance). Without a reference the CPU run happens here.
parity="--model.hf_assets_path tests/assets/tokenizer --metrics.log_freq 1 --training.steps 50 --training.seq_len 128 --training.local_batch_size 4"
for p in float32:llama3_debugmodel.toml:0.01 bfloat16:llama3_debugmodel.toml:0.01 float8:llama3_debugmodel_float8.toml:0.01; do
  IFS=: read -r name config tol <<< "$p"
  precision=$name; [ "$name" = float8 ] && precision=bfloat16
  ref=""; [ -n "$refs" ] && [ -f "$refs/$name/metrics.jsonl" ] && ref="CPU_REFERENCE=$refs/$name/metrics.jsonl"
  if [ $mode = dry ]; then
    step "parity_$name" 60 "echo 'dry run: check_gpu_training.sh $tol ($config, $precision) ${ref:-CPU run here}'; echo ok"
  else
    step "parity_$name" 90 "$ref tests/cli/check_gpu_training.sh $wrap/titan_gpu_tests $tol $wrap/run_train $parity --job.config_file configs/$config --training.mixed_precision_param $precision"
  fi
done
# A steady-state step makes no host sync: one per log interval (tests/cli/check_gpu_syncs.sh).
if [ $mode = dry ]; then
  step syncs_bf16 30 "echo 'dry run: check_gpu_syncs.sh (bf16, then float8 delayed)'; echo 'ok: 0.200000 host syncs per step (one read every 5 steps)'"
else
  # bf16, then float8 delayed (its amax histories on the device) in the same step.
  syncs_args="--model.hf_assets_path tests/assets/tokenizer --training.seq_len 128 --training.local_batch_size 4 --training.mixed_precision_param bfloat16"
  step syncs_bf16 90 "tests/cli/check_gpu_syncs.sh $wrap/titan_gpu_tests $wrap/run_train --job.config_file configs/llama3_debugmodel.toml $syncs_args && tests/cli/check_gpu_syncs.sh $wrap/titan_gpu_tests $wrap/run_train --job.config_file configs/llama3_debugmodel_float8.toml $syncs_args --quantize.linear.float8.recipe_name delayed --quantize.linear.float8.enable_fsdp_float8_all_gather=false --quantize.linear.float8.precompute_float8_dynamic_scale_for_fsdp=false"
fi
# compile.enable: the step captured as a CUDA graph and replayed gives the eager run's losses digit
# for digit, with no host sync in a replayed step (tests/cli/check_compile.sh); bf16, float8
# tensorwise, then float8 delayed (its history ring moves on the device).
if [ $mode = dry ]; then
  step compile_graph 30 "echo 'dry run: check_compile.sh gpu (bf16, float8 tensorwise, float8 delayed)'; echo 'ok: the same losses and gradient norms with compile.enable (13 values)'"
else
  compile_args="--model.hf_assets_path tests/assets/tokenizer --training.seq_len 128 --training.local_batch_size 4 --training.mixed_precision_param bfloat16"
  step compile_graph 150 "tests/cli/check_compile.sh gpu $wrap/titan_gpu_tests $wrap/run_train --job.config_file configs/llama3_debugmodel.toml $compile_args && tests/cli/check_compile.sh gpu $wrap/titan_gpu_tests $wrap/run_train --job.config_file configs/llama3_debugmodel_float8.toml $compile_args && tests/cli/check_compile.sh gpu $wrap/titan_gpu_tests $wrap/run_train --job.config_file configs/llama3_debugmodel_float8.toml $compile_args --quantize.linear.float8.recipe_name delayed --quantize.linear.float8.enable_fsdp_float8_all_gather=false --quantize.linear.float8.precompute_float8_dynamic_scale_for_fsdp=false"
fi
# The same-chip anchor, then titan.cpp at the same shapes.
step anchor_torch 150 "if [ \$mode = dry ]; then cat tests/assets/gpu_check/anchor.txt; else python3 scripts/bench/torch_gpu_anchor.py --iters 10; fi"
step bench_gemm 90 "$wrap/bench_gemm 10"
# Attention twice: titan.cpp's mma.sync kernels, then cuDNN's fused flash attention (an error if
# cuDNN cannot run it here: its reason is in the log).
step bench_attention 60 "$wrap/bench_attention --iters 10 --impl titan"
step bench_attention_cudnn 60 "$wrap/bench_attention --iters 10 --impl cudnn"
# Whole training steps (forward, backward, clipping, AdamW): an 8B-shaped slice (2 layers, full
# vocabulary) at seq 8192, bf16 and float8 tensorwise; parameters initialised on every core.
step model_8b2_bf16 120 "$wrap/bench_model --device cuda --threads $threads --iters 3 --warmup 1 --flavor 8B --layers 2 --batch 1 --seq 8192 --bf16"
step model_8b2_float8 120 "$wrap/bench_model --device cuda --threads $threads --iters 3 --warmup 1 --flavor 8B --layers 2 --batch 1 --seq 8192 --bf16 --float8 tensorwise"
# The bf16 step again, replayed as a CUDA graph (compile.enable): what the graph saves of launches.
step model_8b2_bf16_graph 120 "$wrap/bench_model --device cuda --threads $threads --iters 3 --warmup 2 --flavor 8B --layers 2 --batch 1 --seq 8192 --bf16 --graph"

# cuDNN attention against the CPU op (its plans take a while to build), every bf16 path at
# S = 4096, 8192 and 4097, and the cost of debug.deterministic's cuDNN backward: after the
# figures, so a slow plan build cannot push them out of the budget.
step gpu_tests_cudnn 90 "$gpu_env $wrap/titan_gpu_tests '[cudnn]' -r compact"
step gpu_tests_attention_long 90 "$gpu_env $wrap/titan_gpu_tests '[long]' -r compact"
# (at S = 8192 cuDNN's deterministic backward needs 4 GiB, over the budget: auto shows what a
# debug.deterministic run gets, its attention: line says which kernels ran)
step bench_attention_cudnn_det 60 "$wrap/bench_attention --iters 10 --impl auto --deterministic"

# ---- figures -------------------------------------------------------------------------------
{
  echo
  echo "---- unit tests"
  for f in "$logs"/gpu_tests_*.log; do echo "$(basename "$f" .log): $(grep -h -E 'test cases|All tests passed' "$f" | tail -1)"; done
  echo "---- parity (last step: loss cpu gpu)"
  for f in "$logs"/parity_*.log; do echo "$(basename "$f" .log): $(grep -E '^(ok|FAIL)' "$f" | tail -1)"; done
  echo "---- host syncs per steady-state step (want 1 per log interval of 5: 0.2)"
  grep -h -E '^(ok|FAIL)' "$logs/syncs_bf16.log" 2>/dev/null | tail -1
  echo "---- compile.enable (CUDA graph replay vs eager: same losses, no sync in a replayed step)"
  grep -h -E '^(ok|FAIL)' "$logs/compile_graph.log" 2>/dev/null | tail -1
  echo "---- GEMMs, TFLOP/s: titan.cpp (ours / best cuBLASLt heuristic) and PyTorch; ratio = titan / torch"
  # (numbers compared as numbers: a "nan" from the anchor gives no ratio, not a division by zero)
  awk '
    FILENAME == ARGV[1] { if ($1 == "anchor" && $2 == "gemm" && NF == 8) { bf[$3] = $6 + 0; tw[$3] = $7 + 0; rw[$3] = $8 + 0 }; next }
    $0 ~ /\|/ && $1 != "layer" {
      split($0, c, "|"); split(c[1], h, " "); split(c[2], b, " "); split(c[3], t, " "); split(c[4], r, " ")
      name = h[1]
      printf "%-8s bf16 %6s (best %6s) torch %6.1f x%.2f | fp8tw %6s torch %6.1f x%.2f | fp8rw %6s torch %6.1f x%.2f\n",
        name, b[1], b[2], bf[name], (bf[name] > 0 && bf[name] == bf[name] ? b[1] / bf[name] : 0), t[1], tw[name], (tw[name] > 0 && tw[name] == tw[name] ? t[1] / tw[name] : 0),
        r[1], rw[name], (rw[name] > 0 && rw[name] == rw[name] ? r[1] / rw[name] : 0)
    }' "$logs/anchor_torch.log" "$logs/bench_gemm.log" 2>/dev/null
  echo "---- attention (B=1 S=8192 H=32 KV=8 D=128, causal, bf16), forward+backward ms; ratio = best torch / titan"
  for impl in bench_attention bench_attention_cudnn bench_attention_cudnn_det; do
    awk -v impl="$impl" '
      FILENAME == ARGV[1] { if ($1 == "anchor" && $2 == "attention" && NF == 7) ms[$3] = $5 + 0; next }
      $1 == "implementation:" { sub(/^implementation: /, ""); what = $0 }
      $1 == "forward+backward" {
        best = 0; which = "-"
        for (k in ms) if (ms[k] > 0 && (best == 0 || ms[k] < best)) { best = ms[k]; which = k }
        printf "%s: %s ms, torch %s %.3f ms, x%.2f (%s)\n", impl, $2, which, best, (best > 0 ? best / $2 : 0), what
      }' "$logs/anchor_torch.log" "$logs/$impl.log" 2>/dev/null
  done
  echo "---- training step"
  grep -h -E '^(init|attention|titan\.cpp)' "$logs"/model_*.log 2>/dev/null
  echo "---- total $((SECONDS - start)) s of a ${budget} s budget"
} >> "$summary"
cat "$summary"
