#!/usr/bin/env bash
# HF export and import under tensor parallelism. With optimizer.lr 0 the weights stay at their
# initialisation, which is the same on every mesh: the HF export of a TP 2 run (gathered over the
# TP group: wo/w2 by columns, the rest by rows) must equal one process's byte for byte. Then a
# TP 2 run and one process both start from that export (checkpoint.initial_load_in_hf: each TP
# rank reads its rows, whole rows for wo/w2) and train 3 steps: the losses agree within 1e-5.
# usage: check_tp_hf.sh MPIRUN... -- RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
. "$(dirname "$0")/launch_args.sh"
args=(--job.config_file "$config" --training.device cpu --training.seq_len 32 --training.local_batch_size 2
      --metrics.log_freq 1 --training.mixed_precision_param float32 --checkpoint.enable "$@")
tp=(--parallelism.tensor_parallel_degree 2)
export_run() {  # export_run NAME [LAUNCH...] : 1 step at lr 0, exported as HF
  local name=$1; shift
  "$@" "$run_train" "${args[@]}" "${extra[@]}" --training.steps 1 --optimizer.lr 0 --checkpoint.last_save_in_hf --checkpoint.last_save_model_only \
    --job.dump_folder "$dir/$name" > "$dir/$name.log" 2>&1 || { echo "FAIL: $name"; cat "$dir/$name.log"; exit 1; }
}
extra=(); export_run one
extra=("${tp[@]}"); export_run tp "${launcher[@]}" -np 2
cmp "$dir/one/checkpoint/step-1-hf/model.safetensors" "$dir/tp/checkpoint/step-1-hf/model.safetensors" ||
  { echo "FAIL: the TP 2 export differs from one process's"; exit 1; }
echo "HF export on TP 2 = one process's, byte for byte"
hf="$dir/one/checkpoint/step-1-hf"
from=(--checkpoint.initial_load_path "$hf" --checkpoint.initial_load_in_hf --training.steps 3)
"$run_train" "${args[@]}" "${from[@]}" --job.dump_folder "$dir/load_one" > "$dir/load_one.log" 2>&1 ||
  { echo "FAIL: one-process import"; cat "$dir/load_one.log"; exit 1; }
"${launcher[@]}" -np 2 "$run_train" "${args[@]}" "${tp[@]}" "${from[@]}" --job.dump_folder "$dir/load_tp" > "$dir/load_tp.log" 2>&1 ||
  { echo "FAIL: TP 2 import"; cat "$dir/load_tp.log"; exit 1; }
grep -q "loaded HF weights from '$hf' (" "$dir/load_tp.log" || { echo "FAIL: no import line"; exit 1; }
paste <(field load_one loss) <(field load_tp loss) | tee "$dir/pairs"
[ "$(wc -l < "$dir/pairs")" -eq 3 ] || { echo "FAIL: expected 3 steps"; exit 1; }
awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * $1) bad = 1 } END { if (bad) { print "FAIL: losses differ"; exit 1 }; print "ok" }' "$dir/pairs"
