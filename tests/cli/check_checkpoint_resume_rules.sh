#!/usr/bin/env bash
# Resume rules (issue 19): what a run resumes from, and what it refuses, each with one clear line.
# - Extending a finished run whose last save is model-only resumes from the newest *full*
#   checkpoint (says so), never restarts at step 1 over the earlier steps; metrics.jsonl keeps one
#   row per step. With only model-only saves it refuses, naming initial_load_path (which works).
# - A run that would restart at step 1 over existing steps (train_state excluded) refuses.
# - seq_len, tokenizer or dataset other than the checkpoint's: one line naming both values.
# - Another model: one line before the model is allocated (no FSDP set-up line on 2 ranks).
# - Folders: an out-of-range step number is ignored, a malformed newest folder is skipped for an
#   older good one (a warning), a rank file that is a directory or a device is a clear error.
# - create_seed_checkpoint with load_only is an error and writes nothing.
# usage: check_checkpoint_resume_rules.sh MPIRUN... -- RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
. "$(dirname "$0")/launch_args.sh"
args=(--job.config_file "$config" --training.seq_len 32 --training.local_batch_size 2 --metrics.log_freq 1
      --checkpoint.enable --checkpoint.interval 2 --checkpoint.last_save_model_only "$@")
status=0
# expect RC REGEX [ARGS...]: a run with ARGS; checks the exit code, the regex and (exit 2) one error line.
expect() {
  local rc=$1 regex=$2; shift 2
  set +e; timeout 120 "$run_train" "${args[@]}" "$@" > "$dir/out.log" 2>&1; local got=$?; set -e
  if [ "$got" -ne "$rc" ] || ! grep -Eq -- "$regex" "$dir/out.log" ||
     { [ "$rc" -eq 2 ] && [ "$(grep -c '^error: ' "$dir/out.log")" -ne 1 ]; } || grep -q 'internal error' "$dir/out.log"; then
    echo "FAIL: expected exit $rc and /$regex/, got exit $got:"; grep -E 'error|warn|checkpoint' "$dir/out.log" | cut -c1-300
    status=1; return
  fi
  echo "ok: $(grep -E '^error: |checkpoint: (resuming|loaded|ignoring|skipping)|wrote the seed' "$dir/out.log" | head -3 | cut -c1-260 | tr '\n' ' ')"
}
steps_logged() { grep -o '"step":[0-9]*' "$1" | cut -d: -f2 | tr '\n' ' '; }
loss_at() { grep -o '"loss":[-0-9.e+]*,.*"step":'"$2"'[,}]' "$1" | head -1 | cut -d, -f1 | cut -d: -f2; }

# 1. A finished 3-step run: step-2 full, step-3 model-only (the default last save).
expect 0 "saved step 3 .*model only" --training.steps 3 --job.dump_folder "$dir/run"
cp "$dir/run/checkpoint/step-2/metadata.json" "$dir/step2.meta"
expect 0 "resuming from step-2, the newest full checkpoint; skipped the newer model-only step-3" \
  --training.steps 5 --job.dump_folder "$dir/run"
grep -q "checkpoint: loaded '.*step-2' (step 2) .*all state restored" "$dir/out.log" || { echo "FAIL: did not load step-2 fully"; status=1; }
! grep -Eq 'step +1  loss' "$dir/out.log" || { echo "FAIL: the extension restarted at step 1"; status=1; }
cmp -s "$dir/step2.meta" "$dir/run/checkpoint/step-2/metadata.json" || { echo "FAIL: step-2 was overwritten"; status=1; }
[ "$(steps_logged "$dir/run/metrics.jsonl")" = "1 2 3 4 5 " ] ||
  { echo "FAIL: metrics.jsonl should hold steps 1..5 once, holds: $(steps_logged "$dir/run/metrics.jsonl")"; status=1; }
grep -q "metrics: dropped 1 row" "$dir/out.log" || { echo "FAIL: no line about the dropped metrics row"; status=1; }
# The extension continues exactly: step 5 as in a straight 5-step run.
expect 0 "step +5  loss" --training.steps 5 --job.dump_folder "$dir/straight"
[ -n "$(loss_at "$dir/straight/metrics.jsonl" 5)" ] && [ "$(loss_at "$dir/straight/metrics.jsonl" 5)" = "$(loss_at "$dir/run/metrics.jsonl" 5)" ] ||
  { echo "FAIL: step 5 differs from a straight run: $(loss_at "$dir/straight/metrics.jsonl" 5) vs $(loss_at "$dir/run/metrics.jsonl" 5)"; status=1; }
echo "ok: extension losses equal the straight run's at step 5 ($(loss_at "$dir/run/metrics.jsonl" 5))"

# 2. Only a model-only save: refuse (naming the way out), keep it; the way out works.
expect 0 "saved step 2 .*model only" --training.steps 2 --checkpoint.interval 100 --job.dump_folder "$dir/mo"
expect 2 "holds only model-only checkpoints \(step-2.*--checkpoint.initial_load_path .*/mo/checkpoint/step-2" \
  --training.steps 4 --checkpoint.interval 100 --job.dump_folder "$dir/mo"
[ "$(ls "$dir/mo/checkpoint" | tr '\n' ' ')" = "step-2 " ] || { echo "FAIL: the refused run changed the folder"; status=1; }
expect 2 "load_step = 2: .*step-2' is model-only" --training.steps 4 --checkpoint.load_step 2 --job.dump_folder "$dir/mo"
expect 0 "loaded '.*/mo/checkpoint/step-2' \(step 2, model only\)" --training.steps 2 --job.dump_folder "$dir/mo2" \
  --checkpoint.initial_load_path "$dir/mo/checkpoint/step-2"
expect 0 "loaded '.*/mo/checkpoint/step-2' \(step 2, model only\)" --training.steps 1 --checkpoint.load_only --job.dump_folder "$dir/mo"

# 3. Restarting at step 1 over the run's own steps is refused.
expect 2 "would start again at step 1 .*overwrite step-2, step-3, step-4, step-5 .*another job.dump_folder" \
  --training.steps 6 --checkpoint.exclude_from_loading train_state --job.dump_folder "$dir/run"

# 4. Data other than the checkpoint's (newest full: step-4).
expect 2 "step-4' was saved by a run with training.seq_len = 32, this run has 64.*exclude_from_loading" \
  --training.steps 6 --training.seq_len 64 --job.dump_folder "$dir/run"
expect 0 "loaded '.*step-4' \(step 4\).*not loaded: dataloader" --training.steps 5 --training.seq_len 64 \
  --checkpoint.exclude_from_loading dataloader --job.dump_folder "$dir/run"
expect 2 "step-4' was trained with tokenizer \"hf-[0-9a-f-]*\", this run's is \"byte-v1\"" \
  --training.steps 6 --model.tokenizer byte --job.dump_folder "$dir/run"
expect 2 "step-4' was trained on training.dataset \"c4_test\", [0-9]+ tokens, this run reads \"c4_validation\"" \
  --training.steps 6 --training.dataset c4_validation --job.dump_folder "$dir/run"

# 5. Another model: refused before the model is allocated (2 ranks: no FSDP set-up line).
mkdir -p "$dir/other/checkpoint" && cp -r "$dir/run/checkpoint/step-4" "$dir/other/checkpoint/"
sed -i 's/"dim": 256/"dim": 512/' "$dir/other/checkpoint/step-4/metadata.json"
set +e; timeout 120 "${launcher[@]}" -np 2 "$run_train" "${args[@]}" --training.steps 6 --job.dump_folder "$dir/other" > "$dir/out.log" 2>&1; rc=$?; set -e
if [ "$rc" -ne 2 ] || ! grep -q "step-4' holds a different model (dim 512, this run's 256" "$dir/out.log" || grep -q 'fsdp: ' "$dir/out.log"; then
  echo "FAIL: another model on 2 ranks: exit $rc, expected 2 before any FSDP set-up:"; grep -E 'error|fsdp' "$dir/out.log" | cut -c1-300; status=1
else echo "ok: $(grep '^error' "$dir/out.log" | cut -c1-200) (before FSDP set-up)"; fi

# 6. Folders.
cp -r "$dir/run/checkpoint" "$dir/pristine"
restore() { rm -rf "$dir/run/checkpoint"; cp -r "$dir/pristine" "$dir/run/checkpoint"; }
cp -r "$dir/run/checkpoint/step-4" "$dir/run/checkpoint/step-99999999999999999999"
expect 0 "ignoring '.*step-99999999999999999999'.*not a step number" --training.steps 5 --job.dump_folder "$dir/run"
grep -q "loaded '.*step-4' (step 4)" "$dir/out.log" || { echo "FAIL: did not load step-4 next to an out-of-range folder"; status=1; }
restore
sed -i 's/"tensors": {/"tensors": [], "x": {/' "$dir/run/checkpoint/step-4/metadata.json"
expect 2 "step-4/metadata.json': field tensors is \[\]" --training.steps 5 --checkpoint.load_step 4 --job.dump_folder "$dir/run"
expect 0 "skipping '.*step-4', it cannot be loaded: .*field tensors is \[\], but it must be an object" \
  --training.steps 5 --job.dump_folder "$dir/run"
grep -q "loaded '.*step-2' (step 2)" "$dir/out.log" || { echo "FAIL: did not fall back to step-2"; status=1; }
restore
rm "$dir/run/checkpoint/step-4/rank-00000.safetensors" && mkdir "$dir/run/checkpoint/step-4/rank-00000.safetensors"
expect 2 "step-4/rank-00000.safetensors' is not a regular file \(a directory or a device\)" --training.steps 5 --job.dump_folder "$dir/run"
rm -r "$dir/run/checkpoint/step-4/rank-00000.safetensors" && ln -s /dev/null "$dir/run/checkpoint/step-4/rank-00000.safetensors"
expect 2 "step-4/rank-00000.safetensors' is not a regular file \(a directory or a device\)" --training.steps 5 --job.dump_folder "$dir/run"
restore

# 7. create_seed_checkpoint with load_only.
expect 2 "create_seed_checkpoint = true writes step-0, but checkpoint.load_only = true forbids saving" \
  --training.steps 2 --checkpoint.create_seed_checkpoint --checkpoint.load_only --job.dump_folder "$dir/seed"
[ ! -e "$dir/seed/checkpoint/step-0" ] || { echo "FAIL: the seed checkpoint was written"; status=1; }
[ $status -eq 0 ] && echo "all ok"
exit $status
