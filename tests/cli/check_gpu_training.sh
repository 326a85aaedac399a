#!/usr/bin/env bash
# Training parity, GPU against CPU: the same run (debug model, 50 steps by default) on the CPU
# backend and on the CUDA backend (training.device = cpu / cuda; GPU_RANKS_LAUNCHER, e.g. "mpirun -np 2",
# runs it on ranks sharing the GPU); every step's loss and grad norm within TOL relative.
# Exits 77 (ctest: skipped) where no GPU is visible. CPU_REFERENCE, a metrics.jsonl of the CPU run
# made beforehand (scripts/gpu_bundle.sh makes them where the build is), replaces the CPU run.
# usage: check_gpu_training.sh GPU_TESTS TOL RUN_TRAIN [RUN_TRAIN ARGS...]
set -u
gpu_tests=$1; tol=$2; shift 2
. "$(dirname "$0")/skip_without_gpu.sh"
skip_without_gpu "$gpu_tests"
# Run a is the CPU reference, run b the GPU.
COMPARE_A_METRICS="${CPU_REFERENCE:-}" COMPARE_B_LAUNCHER="${GPU_RANKS_LAUNCHER:-}" exec "$(dirname "$0")/compare_losses.sh" close "$tol" "$@" \
  --a --training.device cpu --b --training.device cuda
