#!/usr/bin/env bash
# Builds the CUDA backend for Hopper here and packs what a lent GPU machine (CUDA, no apt, no
# network; ../shared/DEVICE.md) needs to run it: build-gpu/ (binaries and test executables
# only) and .devlibs/ (the shared libraries from Debian packages that machine lacks: MPI,
# OpenBLAS, spdlog/fmt, PCRE2, xxHash, ...; never libcuda, cuBLAS or NCCL, which it has).
# Both go into one compressed archive, .devbundle/titan_gpu.tar.xz (git-ignored, under the 64 MiB
# a device call can carry): run(carry=[".devbundle"]); bench_gpu.sh --prebuilt unpacks it. The CPU
# reference runs of the parity checks go beside it (.devbundle/ref/*/metrics.jsonl).
#   scripts/gpu_bundle.sh [CUDA_ARCHS, default 90a]
set -euo pipefail
cd "$(dirname "$0")/.."
archs=${1:-90a}
./scripts/setup.sh >/dev/null
cmake -S . -B build-gpu.obj -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$archs" >/dev/null
cmake --build build-gpu.obj -j"$(nproc)" --target run_train titan_gpu_tests bench_gemm bench_attention bench_model
rm -rf build-gpu .devlibs && mkdir -p build-gpu .devlibs
for exe in apps/run_train tests/titan_gpu_tests apps/bench_gemm apps/bench_attention apps/bench_model; do
  cp "build-gpu.obj/$exe" build-gpu/
done
# Every non-CUDA library the binaries load, resolved here.
ldd build-gpu/* | awk '/=> \// { print $3 }' | sort -u |
  grep -v -E 'lib(cuda|cudart|cublas|cublasLt|nccl|nvidia|c|m|pthread|dl|rt|stdc\+\+|gcc_s)\.so' |
  while read -r lib; do cp -L "$lib" .devlibs/; done
strip --strip-unneeded build-gpu/* .devlibs/*  # symbols only: the CUDA fatbins stay
mkdir -p .devbundle
tar -cJf .devbundle/titan_gpu.tar.xz build-gpu .devlibs
# The CPU halves of the GPU parity runs, made here so the GPU's time is spent on the GPU:
# bench_gpu.sh compares its GPU runs with these metrics.jsonl (the same arguments as
# check_gpu_training.sh's CPU run; keep them in step with the parity loop there).
parity=(--model.hf_assets_path tests/assets/tokenizer --metrics.log_freq 1 --training.steps 50 --training.seq_len 128
        --training.local_batch_size 4)
rm -rf .devbundle/ref
for p in float32:llama3_debugmodel.toml:float32 bfloat16:llama3_debugmodel.toml:bfloat16 float8:llama3_debugmodel_float8.toml:bfloat16; do
  IFS=: read -r name config precision <<< "$p"
  OPENBLAS_NUM_THREADS=1 build-gpu.obj/apps/run_train "${parity[@]}" --job.config_file "configs/$config" \
    --training.mixed_precision_param "$precision" --training.device cpu --job.dump_folder ".devbundle/ref/$name" \
    > ".devbundle/ref_$name.log" 2>&1 || { echo "CPU reference $name failed:"; tail -5 ".devbundle/ref_$name.log"; exit 1; }
  find ".devbundle/ref/$name" -mindepth 1 ! -name metrics.jsonl -exec rm -rf {} + 2>/dev/null || true
done
du -sh build-gpu .devlibs .devbundle/titan_gpu.tar.xz .devbundle/ref
