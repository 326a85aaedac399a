#!/usr/bin/env bash
# End-to-end training on the shipped corpus: the loss must drop well below its start (about
# ln(vocab)), metrics.jsonl must hold every logged step, and a second run with the same seed
# must print identical losses.
# usage: check_training.sh RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
run_train=$1; config=$2; shift 2
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
args=(--job.config_file "$config" --training.seq_len 64 --training.local_batch_size 8 --training.steps 40
      --metrics.log_freq 1 --lr_scheduler.warmup_steps 4 --optimizer.lr 2e-3 --debug.seed 5 --debug.deterministic "$@")
"$run_train" "${args[@]}" --job.dump_folder "$dir/a" 2> "$dir/a.log"
"$run_train" "${args[@]}" --job.dump_folder "$dir/b" 2> "$dir/b.log"
losses() { grep -o 'step *[0-9]*  loss *[0-9.]*' "$1"; }
first=$(losses "$dir/a.log" | head -1 | awk '{print $4}')
last=$(losses "$dir/a.log" | tail -1 | awk '{print $4}')
echo "loss: first $first, last $last"
awk -v f="$first" -v l="$last" 'BEGIN { exit !(f > 7.0 && l < 0.5 * f) }' || { echo "FAIL: loss did not drop below half of its start"; cat "$dir/a.log"; exit 1; }
[ "$(wc -l < "$dir/a/metrics.jsonl")" -eq 40 ] || { echo "FAIL: metrics.jsonl should hold 40 lines"; exit 1; }
grep -q '"grad_norm"' "$dir/a/metrics.jsonl" && grep -q '"mfu"' "$dir/a/metrics.jsonl" || { echo "FAIL: metrics.jsonl fields"; exit 1; }
if ! diff <(losses "$dir/a.log") <(losses "$dir/b.log"); then echo "FAIL: same seed, different losses"; exit 1; fi
echo "ok: the loss drops and two runs with the same seed print identical losses"
