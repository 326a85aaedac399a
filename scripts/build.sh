#!/usr/bin/env bash
# Configures and builds titan.cpp (Release) into build/ (or $BUILD_DIR). CUDA is built when nvcc
# is found; TITAN_ENABLE_CUDA=OFF forces a CPU-only build. Extra arguments go to cmake's configure.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DTITAN_ENABLE_CUDA="${TITAN_ENABLE_CUDA:-ON}" "$@" >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"
