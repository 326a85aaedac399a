#!/usr/bin/env bash
# metrics.enable_tensorboard end to end: TorchTitan's layout and tags.
#   1 rank:  {dump}/tb/{YYYYmmdd-HHMM}/events.out.tfevents.*, one file, rank 0 only
#   2 ranks with save_for_all_ranks: {dump}/tb/{stamp}/rank_0/ and rank_1/, one stamp for both
# Each file holds TorchTitan's scalar tags (byte framing and CRCs: tests/unit/test_tensorboard.cpp;
# TensorBoard itself reading them: scripts/reference/check_tensorboard_run.py, dev-time).
# usage: check_tensorboard.sh MPIRUN... -- RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
launcher=()
while [ "$1" != "--" ]; do launcher+=("$1"); shift; done
shift
run_train=$1; config=$2; shift 2
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
args=(--job.config_file "$config" --training.device cpu --training.seq_len 32 --training.local_batch_size 2
      --training.steps 3 --metrics.log_freq 1 --metrics.enable_tensorboard "$@")
"${launcher[@]}" -np 1 "$run_train" "${args[@]}" --job.dump_folder "$dir/one" > "$dir/one.log" 2>&1 ||
  { echo "FAIL: the 1-rank run failed"; cat "$dir/one.log"; exit 1; }
files=$(cd "$dir/one" && find tb -type f | sort)
echo "$files" | grep -Eq '^tb/[0-9]{8}-[0-9]{4}/events\.out\.tfevents\.[0-9]+\..+\.[0-9]+\.0$' && [ "$(echo "$files" | wc -l)" = 1 ] ||
  { echo "FAIL: 1 rank wrote [$files], expected one tb/YYYYmmdd-HHMM/events.out.tfevents.* file"; exit 1; }
f="$dir/one/$files"
for tag in brain.Event:2 loss_metrics/global_avg_loss loss_metrics/global_max_loss grad_norm 'throughput(tps)' tflops \
           'mfu(%)' 'time_metrics/end_to_end(s)' 'time_metrics/data_loading(%)' 'memory/max_active(GiB)' \
           'memory/max_reserved(%)' lr; do
  grep -aqF "$tag" "$f" || { echo "FAIL: $files has no tag $tag"; exit 1; }
done
# 3 steps x 14 scalars (13 per step + global_max_loss) + the version record.
n=$(grep -aoF 'loss_metrics/global_avg_loss' "$f" | wc -l)
[ "$n" = 3 ] || { echo "FAIL: loss_metrics/global_avg_loss written $n times, expected 3 (one per step)"; exit 1; }
grep -q "metrics: TensorBoard event file" "$dir/one.log" || { echo "FAIL: no log line naming the event file"; exit 1; }

"${launcher[@]}" -np 2 "$run_train" "${args[@]}" --training.global_batch_size 4 --metrics.save_for_all_ranks \
  --job.dump_folder "$dir/two" > "$dir/two.log" 2>&1 || { echo "FAIL: the 2-rank run failed"; cat "$dir/two.log"; exit 1; }
files=$(cd "$dir/two" && find tb -type f | sed 's|/events.out.tfevents.*||' | sort | tr '\n' ' ')
echo "$files" | grep -Eq '^tb/([0-9]{8}-[0-9]{4})/rank_0 tb/\1/rank_1 $' ||
  { echo "FAIL: 2 ranks wrote into [$files], expected tb/{stamp}/rank_0 and rank_1 with one stamp"; exit 1; }
echo "ok: TensorBoard files in TorchTitan's layout with its tags (1 rank; 2 ranks with save_for_all_ranks)"
