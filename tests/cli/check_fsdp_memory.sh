#!/usr/bin/env bash
# Per-rank training state (parameters + gradients + AdamW moments, f32) shrinks as 1/shard degree:
# one step of the debug model on 1, 2 and 4 ranks (FSDP shard N); N x the per-rank bytes must be
# within 1% of the single process's (dim-0 padding only). Prints the measured state, the peak
# memory and the --dry-run estimate side by side.
# usage: check_fsdp_memory.sh MPIRUN... -- RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
. "$(dirname "$0")/launch_args.sh"
args=(--job.config_file "$config" --training.seq_len 64 --training.local_batch_size 1 --training.steps 1
      --metrics.log_freq 1 "$@")
printf '%5s %14s %14s %14s %14s %12s %14s\n' ranks params grads optimizer state_total peak_GiB plan_state
status=0
for n in 1 2 4; do
  if [ "$n" = 1 ]; then "$run_train" "${args[@]}" --job.dump_folder "$dir/$n" > "$dir/$n.log" 2>&1
  else "${launcher[@]}" -np "$n" "$run_train" "${args[@]}" --job.dump_folder "$dir/$n" > "$dir/$n.log" 2>&1; fi ||
    { echo "FAIL: run on $n ranks"; cat "$dir/$n.log"; exit 1; }
  p=$(field $n params); g=$(field $n grads); o=$(field $n optimizer); peak=$(field $n memory_gib)
  plan=$("$run_train" "${args[@]}" --dry-run --world-size "$n" --plan-json "$dir/plan$n.json" > /dev/null 2>&1 &&
         grep -A3 '"memory_per_rank_bytes"' "$dir/plan$n.json" | grep -o '"grads": [0-9]*' | cut -d' ' -f2)
  printf '%5s %14s %14s %14s %14s %12.4f %14s\n' "$n" "$p" "$g" "$o" "$((p + g + o))" "$peak" "$((plan * 4))"
  eval "total$n=$((p + g + o))"
  [ "$((plan * 4))" = "$((p + g + o))" ] || { echo "FAIL: the plan's params + grads + AdamW estimate differs from the measured state"; status=1; }
done
for n in 2 4; do
  eval "t=\$total$n"
  awk -v t="$t" -v one="$total1" -v n="$n" 'BEGIN { r = t * n / one; printf "%d ranks: %d x per-rank state / single-process state = %.5f\n", n, n, r; exit !(r >= 1 && r <= 1.01) }' ||
    { echo "FAIL: per-rank state on $n ranks is not 1/$n of one process's"; status=1; }
done
[ $status -eq 0 ] && echo "ok"
exit $status
