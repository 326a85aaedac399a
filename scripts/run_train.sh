#!/usr/bin/env bash
# Quick start: install what is missing, build, and train (the debug model by default).
#   ./scripts/run_train.sh [--section.key value ...]
#   CONFIG_FILE=configs/llama3_8b.toml NGPU=8 ./scripts/run_train.sh
# With NGPU set, runs under `mpirun -np $NGPU` (one rank per GPU, or per CPU "device" without GPUs).
# Without CONFIG_FILE: TorchTitan's debug config on a GPU; on a CPU its CPU-sized variant
# (configs/llama3_debugmodel_cpu.toml: about a minute on 2 cores). Either ends by writing
# {dump_folder}/report.html.
set -euo pipefail
cd "$(dirname "$0")/.."

USER_CONFIG=${CONFIG_FILE:-}
CONFIG_FILE=${CONFIG_FILE:-./configs/llama3_debugmodel.toml}
NGPU=${NGPU:-}

./scripts/setup.sh
./scripts/build.sh >/dev/null

RUN_TRAIN=./build/apps/run_train
# training.device = auto (the default) trains on the GPU when the build has the CUDA backend and
# one is visible, else on the CPU; --training.device cpu keeps the CPU. GPU training is
# experimental (docs/cuda.md). The plan (JSON) says which device the run will use.
plan_file=$(mktemp)
if "$RUN_TRAIN" --job.config_file "$CONFIG_FILE" "$@" --dry-run --plan-json "$plan_file" >/dev/null 2>&1; then
  kind=$(grep -o '"device_kind": *"[^"]*"' "$plan_file" | head -1 | sed 's/.*: *"//; s/"$//')
  if [ -z "$USER_CONFIG" ] && [ "$kind" = cpu ]; then
    CONFIG_FILE=./configs/llama3_debugmodel_cpu.toml
    echo "[run_train] no GPU: the CPU-sized debug run ($CONFIG_FILE); CONFIG_FILE=./configs/llama3_debugmodel.toml for TorchTitan's"
    "$RUN_TRAIN" --job.config_file "$CONFIG_FILE" "$@" --dry-run --plan-json "$plan_file" >/dev/null 2>&1 || true
  fi
  echo "[run_train] training on: $(grep -o '"device": *"[^"]*"' "$plan_file" | head -1 | sed 's/.*: *"//; s/"$//')"
fi
rm -f "$plan_file"
if [ -n "$NGPU" ]; then
  # One BLAS thread per rank; no CMA single-copy (often blocked in containers).
  MPI_FLAGS=(--oversubscribe -x OPENBLAS_NUM_THREADS=1 --mca btl_vader_single_copy_mechanism none)
  [ "$(id -u)" -eq 0 ] && MPI_FLAGS+=(--allow-run-as-root)
  exec mpirun "${MPI_FLAGS[@]}" -np "$NGPU" "$RUN_TRAIN" --job.config_file "$CONFIG_FILE" "$@"
fi
exec "$RUN_TRAIN" --job.config_file "$CONFIG_FILE" "$@"
