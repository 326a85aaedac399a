#!/usr/bin/env bash
# Bad checkpoints give one clear error line naming the folder, file or tensor (exit 2), never
# garbage: a flipped byte, a truncated file, another model, a missing load_step; and a .tmp folder
# left by a crash is ignored and removed.
# usage: check_checkpoint_errors.sh RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
run_train=$1; config=$2; shift 2
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
args=(--job.config_file "$config" --training.seq_len 32 --training.local_batch_size 1 --metrics.log_freq 1
      --checkpoint.enable --checkpoint.interval 2 --no-checkpoint.last_save_model_only --job.dump_folder "$dir/run" "$@")
"$run_train" "${args[@]}" --training.steps 4 --checkpoint.enable_first_step_checkpoint > "$dir/make.log" 2>&1 ||
  { echo "FAIL: making the checkpoints"; cat "$dir/make.log"; exit 1; }
ck="$dir/run/checkpoint"
status=0
[ "$(ls "$ck" | tr '\n' ' ')" = "step-1 step-2 step-4 " ] || { echo "FAIL: expected step-1 (first step), step-2, step-4: $(ls "$ck")"; status=1; }
# expect RC REGEX [ARGS...]: resume with ARGS, check the exit code, the message and one error line.
expect() {
  local rc=$1 regex=$2; shift 2
  set +e; "$run_train" "${args[@]}" --training.steps 6 "$@" > "$dir/out.log" 2>&1; local got=$?; set -e
  if [ "$got" -ne "$rc" ] || ! grep -Eq -- "$regex" "$dir/out.log"; then
    echo "FAIL: expected exit $rc and /$regex/, got exit $got:"; grep -E 'error|checkpoint' "$dir/out.log"; status=1; return
  fi
  if [ "$rc" -eq 2 ] && [ "$(grep -c '^error: ' "$dir/out.log")" -ne 1 ]; then echo "FAIL: not one error line"; status=1; return; fi
  echo "ok: $(grep -E '^error: |checkpoint: (loaded|removing)' "$dir/out.log" | head -2 | cut -c1-200)"
}
cp -r "$ck" "$dir/pristine"
restore() { rm -rf "$ck"; cp -r "$dir/pristine" "$ck"; }
file="$ck/step-4/rank-00000.safetensors"
# A flipped byte in the data.
printf '\x55' | dd of="$file" bs=1 seek=$(( $(stat -c %s "$file") - 100 )) conv=notrunc 2>/dev/null
expect 2 "rank-00000.safetensors' is corrupt or truncated"; restore
truncate -s 1000 "$file"
expect 2 "rank-00000.safetensors' is corrupt or truncated: 1000 bytes"; restore
rm "$file"
expect 2 "rank-00000.safetensors' is missing; the checkpoint is incomplete"; restore
# metadata that records another shape for one tensor (as a checkpoint of another model would):
# its shape and its rows, so that the metadata stays consistent in itself.
awk '/"model.norm.weight": \{/ { f = 1 } f && /^ *256 *$/ { sub(/256/, "128") } f && /"shape"/ { g = 1 } g && /\]/ { f = 0; g = 0 } { print }' \
  "$ck/step-4/metadata.json" > "$dir/meta" && mv "$dir/meta" "$ck/step-4/metadata.json"
expect 2 "tensor 'model.norm.weight' has shape \[128\]"; restore
sed -i 's/"dim": 256/"dim": 512/' "$ck/step-4/metadata.json"
expect 2 "step-4' holds a different model"; restore
# A Llama 2 of the same flavor name: the model name comes first in the message and the fix.
expect 2 "step-4' holds a different model \(model \"llama3\", this run's \"llama2\".*use the checkpoint's model.name \"llama3\"" --model.name llama2
expect 2 "checkpoint.load_step = 3: .* holds no complete step-3 \(complete: 1, 2, 4\)" --checkpoint.load_step 3
expect 0 "checkpoint: loaded '.*step-2' \(step 2\)" --checkpoint.load_step 2; restore
expect 2 "was trained with debug.seed = 0, this run has 7" --debug.seed 7
expect 0 "\(step 4\) in [0-9.]+s; not loaded: optimizer, dataloader" --checkpoint.exclude_from_loading optimizer,dataloader; restore
# initial_load_path: a fresh run folder starts from another run's checkpoint (model only by default).
expect 0 "loaded '.*step-4' \(step 4, model only\)" --job.dump_folder "$dir/other" --checkpoint.initial_load_path "$ck/step-4"
# A crash in the middle of a save: the .tmp folder is never loaded, and goes away.
mkdir -p "$ck/step-6.tmp" && echo partial > "$ck/step-6.tmp/rank-00000.safetensors"
expect 0 "removing '.*step-6.tmp', a save that did not finish"
grep -q "checkpoint: loaded '.*step-4' (step 4)" "$dir/out.log" || { echo "FAIL: did not resume from step-4"; status=1; }
[ $status -eq 0 ] && echo "all ok"
exit $status
