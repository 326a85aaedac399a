#!/usr/bin/env bash
# Per-rank memory under FSDP, step 2 of the debug model on 1, 2 and 4 ranks (shard N), with
# mixed_precision_param float32 and bfloat16:
#   - the training state (parameters + gradients + AdamW moments, f32) is 1/N of one process's
#     (N x per-rank within 1%: dim-0 padding only) and equals the plan's params + grads + AdamW;
#   - the measured peak of the step (titan.cpp's allocator) falls with the shard degree, in bf16
#     as in f32 (bf16 keeps no private weight copies alive for backward), and bf16's peak is not
#     above f32's;
#   - the plan's per-rank estimate (--dry-run) is within 10% of the measured peak.
# Prints measured and planned figures side by side.
# usage: check_fsdp_memory.sh MPIRUN... -- RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
. "$(dirname "$0")/launch_args.sh"
args=(--job.config_file "$config" --training.seq_len 256 --training.local_batch_size 2 --training.steps 2
      --metrics.log_freq 1 "$@")
plan_field() { grep -A8 '"memory_per_rank_bytes"' "$1" | grep -o "\"$2\": [0-9]*" | cut -d' ' -f2; }
printf '%9s %5s %12s %12s %12s %12s %12s %12s\n' dtype ranks params grads optimizer state_total peak_MiB plan_MiB
status=0
for dt in float32 bfloat16; do
  for n in 1 2 4; do
    run="$dt-$n"
    run_args=("${args[@]}" --training.mixed_precision_param "$dt")
    if [ "$n" = 1 ]; then "$run_train" "${run_args[@]}" --job.dump_folder "$dir/$run" > "$dir/$run.log" 2>&1
    else "${launcher[@]}" -np "$n" "$run_train" "${run_args[@]}" --job.dump_folder "$dir/$run" > "$dir/$run.log" 2>&1; fi ||
      { echo "FAIL: run on $n ranks ($dt)"; cat "$dir/$run.log"; exit 1; }
    # Step 2: the AdamW moments exist from step 1's update on, so it is a steady-state step.
    last() { field "$run" "$1" | tail -1; }
    p=$(last params); g=$(last grads); o=$(last optimizer); peak=$(last memory_gib)
    "$run_train" "${run_args[@]}" --dry-run --world-size "$n" --plan-json "$dir/plan-$run.json" > /dev/null 2>&1 ||
      { echo "FAIL: --dry-run --world-size $n"; exit 1; }
    plan_state=$(( $(plan_field "$dir/plan-$run.json" params) + $(plan_field "$dir/plan-$run.json" grads) +
                   $(plan_field "$dir/plan-$run.json" optimizer) ))
    plan_total=$(plan_field "$dir/plan-$run.json" total)
    peak_mib=$(awk -v g="$peak" 'BEGIN { printf "%.2f", g * 1024 }')
    plan_mib=$(awk -v b="$plan_total" 'BEGIN { printf "%.2f", b / 1048576 }')
    printf '%9s %5s %12s %12s %12s %12s %12s %12s\n' "$dt" "$n" "$p" "$g" "$o" "$((p + g + o))" "$peak_mib" "$plan_mib"
    eval "state_${dt}_$n=$((p + g + o)); peak_${dt}_$n=$peak_mib"
    [ "$plan_state" = "$((p + g + o))" ] || { echo "FAIL: the plan's params + grads + AdamW estimate differs from the measured state"; status=1; }
    awk -v m="$peak_mib" -v e="$plan_mib" 'BEGIN { r = e / m; printf "  plan / measured peak = %.3f\n", r; exit !(r >= 0.9 && r <= 1.1) }' ||
      { echo "FAIL: the plan's estimate is more than 10% off the measured peak ($dt, $n ranks)"; status=1; }
  done
  for n in 2 4; do
    eval "t=\$state_${dt}_$n; one=\$state_${dt}_1"
    awk -v t="$t" -v one="$one" -v n="$n" 'BEGIN { r = t * n / one; printf "%d ranks: %d x per-rank state / single-process state = %.5f\n", n, n, r; exit !(r >= 1 && r <= 1.01) }' ||
      { echo "FAIL: per-rank state on $n ranks is not 1/$n of one process's"; status=1; }
  done
  eval "a=\$peak_${dt}_1; b=\$peak_${dt}_2; c=\$peak_${dt}_4"
  awk -v a="$a" -v b="$b" -v c="$c" 'BEGIN { exit !(b < a && c < b) }' ||
    { echo "FAIL: the $dt peak does not fall with the shard degree ($a, $b, $c MiB)"; status=1; }
done
for n in 1 2 4; do
  eval "f=\$peak_float32_$n; h=\$peak_bfloat16_$n"
  awk -v f="$f" -v h="$h" 'BEGIN { exit !(h <= f * 1.01) }' ||
    { echo "FAIL: on $n ranks the bf16 peak ($h MiB) is above the f32 one ($f MiB)"; status=1; }
done
[ $status -eq 0 ] && echo "ok"
exit $status
