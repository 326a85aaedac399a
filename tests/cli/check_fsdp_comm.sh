#!/usr/bin/env bash
# FSDP communication counters, from rank 0's metrics.jsonl on 2 ranks (shard 2), float8 debug model
# with every Linear converted and bf16 mixed precision:
#   - with float8 all-gather, the bytes all-gathered per step are at most 0.55x those of the bf16
#     all-gather (the float8 weights travel as e4m3 bytes, the rest in bf16);
#   - precompute_float8_dynamic_scale_for_fsdp issues exactly one amax all-reduce per step;
#     without it, one per float8 weight (43) per step;
#   - with 4 micro-batches of gradient accumulation, the reduce-scatters per step are those of
#     one micro-batch (gradients are reduced after the last micro-batch only).
# usage: check_fsdp_comm.sh MPIRUN... -- RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
. "$(dirname "$0")/launch_args.sh"
args=(--job.config_file "$config" --training.seq_len 32 --training.local_batch_size 1 --training.steps 3
      --metrics.log_freq 1 --training.mixed_precision_param bfloat16 --quantize.linear.float8.filter_fqns= "$@")
run() {
  local name=$1; shift
  "${launcher[@]}" "$run_train" "${args[@]}" "$@" --job.dump_folder "$dir/$name" > "$dir/$name.log" 2>&1 ||
    { echo "FAIL: run $name"; cat "$dir/$name.log"; exit 1; }
}
run fp8_precompute --quantize.linear.float8.enable_fsdp_float8_all_gather --quantize.linear.float8.precompute_float8_dynamic_scale_for_fsdp
run fp8 --quantize.linear.float8.enable_fsdp_float8_all_gather --no-quantize.linear.float8.precompute_float8_dynamic_scale_for_fsdp
run bf16 --no-quantize.linear.float8.enable_fsdp_float8_all_gather --no-quantize.linear.float8.precompute_float8_dynamic_scale_for_fsdp
run bf16_accum4 --no-quantize.linear.float8.enable_fsdp_float8_all_gather --no-quantize.linear.float8.precompute_float8_dynamic_scale_for_fsdp \
  --training.global_batch_size 8
status=0
printf '%-16s %6s %18s %16s %14s\n' run step all_gather_bytes amax_allreduces wait_seconds
for name in fp8_precompute fp8 bf16; do
  paste <(seq 1 3) <(field $name all_gather_bytes) <(field $name float8_amax_all_reduces) <(field $name wait_seconds) |
    while read -r step bytes amax wait; do printf '%-16s %6s %18s %16s %14s\n' "$name" "$step" "$bytes" "$amax" "$wait"; done
done
# Compare steady-state steps (2 and 3).
for step in 2 3; do
  f8=$(field fp8_precompute all_gather_bytes | sed -n "${step}p"); bf=$(field bf16 all_gather_bytes | sed -n "${step}p")
  awk -v a="$f8" -v b="$bf" -v s="$step" 'BEGIN { r = a / b; printf "step %d: float8 / bf16 all-gather bytes = %.4f\n", s, r; exit !(r <= 0.55) }' ||
    { echo "FAIL: float8 all-gather moves more than 0.55x the bf16 bytes"; status=1; }
done
[ "$(field fp8_precompute float8_amax_all_reduces | sort -u)" = "1" ] ||
  { echo "FAIL: precompute should issue exactly one amax all-reduce per step"; status=1; }
[ "$(field fp8 float8_amax_all_reduces | sort -u)" = "43" ] ||
  { echo "FAIL: without precompute, one amax all-reduce per float8 weight (43) per step"; status=1; }
[ "$(field bf16 float8_amax_all_reduces | sort -u)" = "0" ] || { echo "FAIL: bf16 all-gather issued amax all-reduces"; status=1; }
for counter in reduce_scatter_calls reduce_scatter_bytes; do
  one=$(field bf16 $counter | sort -u); four=$(field bf16_accum4 $counter | sort -u)
  echo "$counter per step: 1 micro-batch $one, 4 micro-batches $four"
  [ -n "$one" ] && [ "$one" != 0 ] && [ "$one" = "$four" ] ||
    { echo "FAIL: gradient accumulation should reduce-scatter once per step"; status=1; }
done
grep -q 'comm [0-9.]*MiB wait [0-9.]*s' "$dir/fp8.log" || { echo "FAIL: the step log shows no comm column"; status=1; }
# Host waits for a device: none on the CPU backend (the host does the work); the column and the
# metrics.jsonl field are there for GPU runs (syncs/step).
if ! grep -q 'device: training on cuda' "$dir/fp8.log"; then
  grep -q 'syncs 0' "$dir/fp8.log" && [ "$(grep -o '"host_syncs":[0-9]*' "$dir/fp8/metrics.jsonl" | cut -d: -f2 | sort -u)" = "0" ] ||
    { echo "FAIL: a CPU run should log 0 host syncs per step"; status=1; }
fi
[ $status -eq 0 ] && echo "ok"
exit $status
