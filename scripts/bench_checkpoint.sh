#!/usr/bin/env bash
# Checkpoint save cost on this machine: the debug model (f32 master weights + AdamW moments),
# saved every 2 steps for 6 steps, synchronous against async, on 1 and 2 ranks. Prints, per
# configuration, the mean over its saves of: bytes written per rank, write time (file + fsync),
# MiB/s, and how long training stalled. Extra arguments go to run_train.
# usage: scripts/bench_checkpoint.sh [RUN_TRAIN ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
[ -x "$BUILD_DIR/apps/run_train" ] || ./scripts/build.sh >/dev/null
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
args=(--job.config_file configs/llama3_debugmodel.toml --training.seq_len 64 --training.local_batch_size 2 --training.steps 6
      --metrics.log_freq 6 --checkpoint.enable --checkpoint.interval 2 --no-checkpoint.last_save_model_only "$@")
printf '%-6s %-9s %12s %12s %10s %12s\n' ranks mode MiB/rank write_s MiB/s stall_s
for np in 1 2; do
  for mode in disabled async; do
    out="$dir/$np-$mode"
    mpirun --oversubscribe -np "$np" "$BUILD_DIR/apps/run_train" "${args[@]}" --checkpoint.async_mode "$mode" \
      --job.dump_folder "$out" > "$out.log" 2>&1 || { cat "$out.log"; exit 1; }
    grep -o 'this rank wrote [0-9.]* MiB in [0-9.]*s, [0-9.]* MiB/s; training stalled [0-9.]*s' "$out.log" |
      awk -v np="$np" -v mode="$mode" '{ mib += $4; w += $7 + 0; r += $8; s += $12 + 0; n++ }
        END { printf "%-6s %-9s %12.2f %12.3f %10.1f %12.4f\n", np, (mode == "disabled" ? "sync" : mode), mib/n, w/n, r/n, s/n }'
  done
done
