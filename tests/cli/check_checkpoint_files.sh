#!/usr/bin/env bash
# Checkpoint files on 2 ranks: keep_latest_k keeps only the newest complete steps; async,
# async_with_pinned_mem and sync runs write byte-identical shard files (same checksums in metadata.json); a model-only final
# save holds the model in export_dtype and nothing else.
# usage: check_checkpoint_files.sh MPIRUN... -- RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
. "$(dirname "$0")/launch_args.sh"
args=(--job.config_file "$config" --training.seq_len 32 --training.local_batch_size 1 --training.steps 8
      --metrics.log_freq 1 --checkpoint.enable --checkpoint.interval 2 --checkpoint.keep_latest_k 3 "$@")
run() {
  local name=$1; shift
  "${launcher[@]}" "$run_train" "${args[@]}" "$@" --job.dump_folder "$dir/$name" > "$dir/$name.log" 2>&1 ||
    { echo "FAIL: run $name"; cat "$dir/$name.log"; exit 1; }
}
run sync --checkpoint.async_mode disabled --no-checkpoint.last_save_model_only
run async --checkpoint.async_mode async --no-checkpoint.last_save_model_only
run pinned --checkpoint.async_mode async_with_pinned_mem --no-checkpoint.last_save_model_only
run model_only --checkpoint.last_save_model_only --checkpoint.export_dtype bfloat16
status=0
for name in sync async pinned; do
  kept=$(ls "$dir/$name/checkpoint" | tr '\n' ' ')
  echo "$name keeps: $kept"
  [ "$kept" = "step-4 step-6 step-8 " ] || { echo "FAIL: keep_latest_k = 3 should keep step-4 step-6 step-8"; status=1; }
done
for f in "$dir"/sync/checkpoint/step-8/rank-*.safetensors; do
  for mode in async pinned; do
    cmp "$f" "$dir/$mode/checkpoint/step-8/$(basename "$f")" || { echo "FAIL: $mode and sync differ: $(basename "$f")"; status=1; }
  done
done
hashes() { grep -o '"xxh3": "[0-9a-f]*"' "$1/checkpoint/step-8/metadata.json"; }
[ "$(hashes "$dir/sync")" = "$(hashes "$dir/async")" ] && [ -n "$(hashes "$dir/sync")" ] ||
  { echo "FAIL: metadata checksums differ between async and sync"; status=1; }
grep -q 'training stalled .*async snapshot' "$dir/async.log" || { echo "FAIL: the async run logs no async save"; status=1; }
meta="$dir/model_only/checkpoint/step-8/metadata.json"
grep -q '"model_only": true' "$meta" && grep -q '"dtype": "bfloat16"' "$meta" ||
  { echo "FAIL: the last save should be model only, bfloat16"; status=1; }
! grep -q '"optimizer\.' "$meta" || { echo "FAIL: a model-only save holds optimizer state"; status=1; }
grep -q '"model.tok_embeddings.weight"' "$meta" && grep -q '"BF16"' "$meta" || { echo "FAIL: model tensors in bf16"; status=1; }
grep -q '"optimizer.exp_avg.output.weight"' "$dir/model_only/checkpoint/step-6/metadata.json" ||
  { echo "FAIL: saves before the last hold the optimizer"; status=1; }
[ $status -eq 0 ] && echo "ok"
exit $status
