#!/usr/bin/env bash
# hpZ (parallelism.fsdp_reshard_after_forward = 2) on FSDP shard 4, from rank 0's metrics.jsonl and
# --plan-json, against the default policy:
#   - every forward all-gather runs on the shard group and every backward one on the 2-rank hpZ
#     group: per step, the default's shard-group gathers = hpZ's shard-group + hpZ-group gathers,
#     and hpZ's hpZ-group gathers = the units that reshard (all but [norm, output]) x micro-batches;
#   - the plan's gathered memory grows by the 1/2 copies of those units (f32: 4 bytes x their
#     parameters / 2).
# usage: check_hpz.sh MPIRUN... -- RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
. "$(dirname "$0")/launch_args.sh"
args=(--job.config_file "$config" --training.seq_len 32 --training.local_batch_size 1 --training.global_batch_size 8
      --training.steps 2 --metrics.log_freq 1 --training.mixed_precision_param float32 "$@")
for policy in default 2; do
  "${launcher[@]}" -np 4 "$run_train" "${args[@]}" --parallelism.fsdp_reshard_after_forward $policy \
    --job.dump_folder "$dir/$policy" > "$dir/$policy.log" 2>&1 || { echo "FAIL: run $policy"; cat "$dir/$policy.log"; exit 1; }
  "$run_train" "${args[@]}" --parallelism.fsdp_reshard_after_forward $policy --dry-run --world-size 4 \
    --plan-json "$dir/$policy.json" > /dev/null 2>&1 || { echo "FAIL: plan $policy"; exit 1; }
done
count() { tail -1 "$dir/$1/metrics.jsonl" | grep -o "\"$2\":[0-9]*" | cut -d: -f2; }
num() { grep -o "\"$2\": *[0-9]*" "$dir/$1.json" | head -1 | grep -o '[0-9]*$'; }
d_shard=$(count default fsdp_all_gathers_shard_group); d_hpz=$(count default fsdp_all_gathers_hpz_group)
h_shard=$(count 2 fsdp_all_gathers_shard_group); h_hpz=$(count 2 fsdp_all_gathers_hpz_group)
layers=$(num 2 n_layers); micro=$(grep -o '"grad_accum_steps": *[0-9]*' "$dir/2.json" | grep -o '[0-9]*$')
echo "all-gathers per step: default shard $d_shard hpz $d_hpz; reshard_after_forward=2: shard $h_shard hpz $h_hpz ($micro micro-batches)"
[ "$d_hpz" -eq 0 ] && [ "$h_hpz" -eq $(( (layers + 1) * micro )) ] && [ $((h_shard + h_hpz)) -eq "$d_shard" ] ||
  { echo "FAIL: the backward all-gathers should run on the hpZ group"; exit 1; }
params=$(num 2 params); vocab=$(num 2 vocab_size); dim=$(num 2 dim)
g_default=$(num default gathered); g_hpz=$(num 2 gathered)
want=$(( 4 * (params - vocab * dim - dim) / 2 ))
echo "plan gathered bytes: default $g_default, hpZ $g_hpz (+$((g_hpz - g_default)), expected +$want)"
[ $((g_hpz - g_default)) -eq "$want" ] || { echo "FAIL: the plan should add the 1/2 copies of the resharded units"; exit 1; }
echo "ok"
