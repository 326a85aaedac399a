#!/usr/bin/env bash
# Float16 dynamic loss scaling when the gradients overflow: with an initial loss scale of 1e30 the
# float16 gradients are inf from the first step, so every step is skipped and the scale halves each
# time (GradScaler's backoff), and the weights stay untouched: the run's HF export at step 3 equals,
# byte for byte, that of a run whose optimizer has a learning rate of 0.
# usage: check_fp16_overflow.sh RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
run_train=$1; config=$2; shift 2
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
args=(--job.config_file "$config" --training.device cpu --training.seq_len 32 --training.local_batch_size 2 --training.steps 3
      --metrics.log_freq 1 --training.mixed_precision_param float16 --checkpoint.enable --checkpoint.last_save_in_hf
      --checkpoint.last_save_model_only "$@")
"$run_train" "${args[@]}" --training.loss_scale_init 1e30 --job.dump_folder "$dir/overflow" > "$dir/overflow.log" 2>&1 ||
  { echo "FAIL: the overflowing run"; cat "$dir/overflow.log"; exit 1; }
"$run_train" "${args[@]}" --optimizer.lr 0 --job.dump_folder "$dir/still" > "$dir/still.log" 2>&1 ||
  { echo "FAIL: the lr 0 run"; cat "$dir/still.log"; exit 1; }
scales=$(grep -o '"loss_scale":[0-9.e+]*' "$dir/overflow/metrics.jsonl" | cut -d: -f2 | tr '\n' ' ')
skipped=$(grep -c '"step_skipped":true' "$dir/overflow/metrics.jsonl")
echo "loss scales: $scales; skipped steps: $skipped"
[ "$skipped" -eq 3 ] || { echo "FAIL: every step should be skipped"; exit 1; }
awk -v s="$scales" 'BEGIN { n = split(s, v, " "); if (n != 3 || v[1] != 1e30 || v[2] != v[1] / 2 || v[3] != v[2] / 2) exit 1 }' ||
  { echo "FAIL: the scale should start at 1e30 and halve every step"; exit 1; }
[ "$(grep -c 'step skipped (weights unchanged)' "$dir/overflow.log")" -eq 3 ] || { echo "FAIL: no skip lines in the log"; exit 1; }
cmp "$dir/overflow/checkpoint/step-3-hf/model.safetensors" "$dir/still/checkpoint/step-3-hf/model.safetensors" ||
  { echo "FAIL: the skipped steps changed the weights"; exit 1; }
echo "ok: 3 steps skipped, scale 1e30 -> halved each step, weights untouched"
