#!/usr/bin/env bash
# Quick start: install what is missing, build, and train (the debug model by default).
#   ./scripts/run_train.sh [--section.key value ...]
#   CONFIG_FILE=configs/llama3_8b.toml NGPU=8 ./scripts/run_train.sh
# With NGPU set, runs under `mpirun -np $NGPU` (one rank per GPU, or per CPU "device" without GPUs).
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG_FILE=${CONFIG_FILE:-./configs/llama3_debugmodel.toml}
NGPU=${NGPU:-}

./scripts/setup.sh
./scripts/build.sh >/dev/null

RUN_TRAIN=./build/apps/run_train
# The GPU when the build has the CUDA backend and one is visible (the plan's device line says
# so); TITAN_DEVICE=cpu keeps the CPU. GPU training is experimental (docs/cuda.md).
if [ -z "${TITAN_DEVICE:-}" ]; then
  plan=$("$RUN_TRAIN" --job.config_file "$CONFIG_FILE" --dry-run 2>/dev/null || true)
  if grep -q "TITAN_DEVICE=cuda trains on it" <<<"$plan"; then export TITAN_DEVICE=cuda; fi
fi
echo "[run_train] training on: ${TITAN_DEVICE:-cpu}"
if [ -n "$NGPU" ]; then
  # One BLAS thread per rank; no CMA single-copy (often blocked in containers).
  MPI_FLAGS=(--oversubscribe -x OPENBLAS_NUM_THREADS=1 --mca btl_vader_single_copy_mechanism none)
  [ "$(id -u)" -eq 0 ] && MPI_FLAGS+=(--allow-run-as-root)
  [ -n "${TITAN_DEVICE:-}" ] && MPI_FLAGS+=(-x TITAN_DEVICE)
  exec mpirun "${MPI_FLAGS[@]}" -np "$NGPU" "$RUN_TRAIN" --job.config_file "$CONFIG_FILE" "$@"
fi
exec "$RUN_TRAIN" --job.config_file "$CONFIG_FILE" "$@"
