#!/usr/bin/env bash
# The bad-input corpus of checkpoints (tests/bad_inputs/checkpoint): every metadata.json, HF
# config.json and safetensors file there is loaded by run_train and must end in exit 2 with one
# error line that names the problem (the regex of its *.expect manifest), never "internal error",
# a library's exception text, a crash or a hang.
#   metadata/*.json      -> step-1/metadata.json of a real 1-step checkpoint, resumed (load_step 1)
#   hf_config/*.json     -> config.json of an HF export of the debug model, imported (initial_load_in_hf)
#   safetensors/*        -> model.safetensors next to a good config.json, imported
# usage: check_checkpoint_bad_inputs.sh RUN_TRAIN CONFIG BAD_DIR [EXTRA ARGS...]
set -eu
run_train=$1; config=$2; bad=$3; shift 3
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
args=(--job.config_file "$config" --training.seq_len 32 --training.local_batch_size 2 --metrics.log_freq 1
      --checkpoint.enable --no-checkpoint.last_save_model_only "$@")
"$run_train" "${args[@]}" --training.steps 1 --job.dump_folder "$dir/run" > "$dir/make.log" 2>&1 ||
  { echo "FAIL: making the checkpoint"; cat "$dir/make.log"; exit 1; }
"$run_train" "${args[@]}" --training.steps 1 --checkpoint.last_save_model_only --checkpoint.last_save_in_hf \
  --job.dump_folder "$dir/export" > "$dir/export.log" 2>&1 || { echo "FAIL: the HF export"; cat "$dir/export.log"; exit 1; }
hf="$dir/export/checkpoint/step-1-hf"
status=0; count=0
# check NAME REGEX LOG RC: one error line matching REGEX, exit 2, no internal error or crash text.
check() {
  local name=$1 regex=$2 log=$3 rc=$4
  count=$((count + 1))
  if [ "$rc" -ne 2 ] || ! grep -Eq -- "$regex" "$log" || [ "$(grep -c '^error: ' "$log")" -ne 1 ] ||
     grep -Eq 'internal error|terminate called|Aborted|Segmentation|what\(\)|json.exception|basic_string|stoll' "$log"; then
    echo "FAIL: $name: expected exit 2 and one error line /$regex/, got exit $rc:"; grep -E 'error|warn' "$log" | cut -c1-400
    status=1
  else
    echo "ok: $name: $(grep '^error: ' "$log" | cut -c1-220)"
  fi
}
while IFS=$'\t' read -r file regex; do
  case "$file" in ''|'#'*) continue ;; esac
  rm -rf "$dir/case"; mkdir -p "$dir/case/checkpoint"
  cp -r "$dir/run/checkpoint/step-1" "$dir/case/checkpoint/"
  cp "$bad/$file" "$dir/case/checkpoint/step-1/metadata.json"
  set +e; timeout 120 "$run_train" "${args[@]}" --training.steps 2 --checkpoint.load_step 1 --job.dump_folder "$dir/case" \
    > "$dir/out.log" 2>&1; rc=$?; set -e
  check "$file" "$regex" "$dir/out.log" "$rc"
done < "$bad/metadata.expect"
from_hf=(--training.steps 1 --checkpoint.folder fresh --checkpoint.initial_load_in_hf --checkpoint.initial_load_path "$dir/hf")
while IFS=$'\t' read -r file regex; do
  case "$file" in ''|'#'*) continue ;; esac
  rm -rf "$dir/hf" "$dir/case"; mkdir -p "$dir/hf"
  cp "$hf/model.safetensors" "$dir/hf/"; cp "$bad/$file" "$dir/hf/config.json"
  set +e; timeout 120 "$run_train" "${args[@]}" "${from_hf[@]}" --job.dump_folder "$dir/case" > "$dir/out.log" 2>&1; rc=$?; set -e
  check "$file" "$regex" "$dir/out.log" "$rc"
done < "$bad/hf_config.expect"
while IFS=$'\t' read -r file regex; do
  case "$file" in ''|'#'*) continue ;; esac
  rm -rf "$dir/hf" "$dir/case"; mkdir -p "$dir/hf"
  cp "$bad/hf_config_debugmodel.json" "$dir/hf/config.json"; cp "$bad/$file" "$dir/hf/model.safetensors"
  set +e; timeout 120 "$run_train" "${args[@]}" "${from_hf[@]}" --job.dump_folder "$dir/case" > "$dir/out.log" 2>&1; rc=$?; set -e
  check "$file" "$regex" "$dir/out.log" "$rc"
done < "$bad/safetensors.expect"
# The good config.json itself imports (the corpus fails for its one defect, not for the base).
rm -rf "$dir/hf" "$dir/case"; mkdir -p "$dir/hf"
cp "$hf/model.safetensors" "$dir/hf/"; cp "$bad/hf_config_debugmodel.json" "$dir/hf/config.json"
"$run_train" "${args[@]}" "${from_hf[@]}" --job.dump_folder "$dir/case" > "$dir/out.log" 2>&1 ||
  { echo "FAIL: the good HF config does not import"; grep error "$dir/out.log"; status=1; }
[ $status -eq 0 ] && echo "all $count bad inputs rejected with a clear line"
exit $status
