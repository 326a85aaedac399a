#!/usr/bin/env bash
# Builds the CUDA backend for Hopper here and packs what a lent GPU machine (CUDA, no apt, no
# network; ../shared/DEVICE.md) needs to run it: build-gpu/ (binaries and test executables
# only) and .devlibs/ (the shared libraries from Debian packages that machine lacks: MPI,
# OpenBLAS, spdlog/fmt, PCRE2, xxHash, ...; never libcuda, cuBLAS or NCCL, which it has).
# Both go into one compressed archive, .devbundle/titan_gpu.tar.xz (git-ignored, under the 64 MiB
# a device call can carry): run(carry=[".devbundle"]); bench_gpu.sh --prebuilt unpacks it.
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
du -sh build-gpu .devlibs .devbundle/titan_gpu.tar.xz
