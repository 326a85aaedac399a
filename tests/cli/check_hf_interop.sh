#!/usr/bin/env bash
# HF interop through training runs: 2 ranks train 3 steps and export the last step as HF
# safetensors (checkpoint.last_save_in_hf); the same run saving a titan.cpp checkpoint instead,
# converted by scripts/convert_to_hf.sh (convert_checkpoint), gives the same bytes; the export
# round-trips bit-exactly through titan.cpp (hf_check); a fresh 2-rank FSDP run starts from it
# (checkpoint.initial_load_in_hf) and its first loss equals a single process's started from it
# through model.hf_assets_path.
# usage: check_hf_interop.sh MPIRUN... -- RUN_TRAIN CONFIG HF_CHECK [EXTRA ARGS...]
set -eu
. "$(dirname "$0")/launch_args.sh"
hf_check=$1; shift
args=(--job.config_file "$config" --training.seq_len 32 --training.local_batch_size 1 --metrics.log_freq 1
      --training.mixed_precision_param float32 --checkpoint.enable "$@")
"${launcher[@]}" "$run_train" "${args[@]}" --training.steps 3 --checkpoint.last_save_in_hf --checkpoint.last_save_model_only \
  --job.dump_folder "$dir/export" > "$dir/export.log" 2>&1 || { echo "FAIL: export run"; cat "$dir/export.log"; exit 1; }
hf="$dir/export/checkpoint/step-3-hf"
[ -f "$hf/model.safetensors" ] && [ -f "$hf/config.json" ] || { echo "FAIL: no HF export in $hf"; ls -R "$dir/export"; exit 1; }
grep -q '"model.layers.5.self_attn.q_proj.weight"' <(head -c 20000 "$hf/model.safetensors") || { echo "FAIL: HF names"; exit 1; }
"$hf_check" "$hf" --check-roundtrip || { echo "FAIL: round trip"; exit 1; }
# A Llama 2 exports as LlamaForCausalLM with its own RoPE (base 10000, no llama3 scaling).
case " $* " in *" --model.name llama2 "*)
  grep -q '"rope_theta": *10000' "$hf/config.json" && grep -q '"rope_scaling": *null' "$hf/config.json" ||
    { echo "FAIL: Llama 2 config.json"; cat "$hf/config.json"; exit 1; }
  echo "config.json: rope_theta 10000, rope_scaling null";;
esac
"${launcher[@]}" "$run_train" "${args[@]}" --training.steps 3 --no-checkpoint.last_save_model_only \
  --job.dump_folder "$dir/titan" > "$dir/titan.log" 2>&1 || { echo "FAIL: checkpoint run"; cat "$dir/titan.log"; exit 1; }
"$(dirname "$run_train")/convert_checkpoint" "$dir/titan/checkpoint/step-3" "$dir/converted" ||
  { echo "FAIL: convert_checkpoint"; exit 1; }
cmp "$dir/converted/model.safetensors" "$hf/model.safetensors" || { echo "FAIL: converter and last_save_in_hf differ"; exit 1; }
echo "convert_checkpoint of step-3 = last_save_in_hf export of step 3, byte for byte"
from_hf=(--checkpoint.initial_load_path "$hf" --checkpoint.initial_load_in_hf --training.steps 1 --training.global_batch_size 2)
"${launcher[@]}" "$run_train" "${args[@]}" "${from_hf[@]}" --job.dump_folder "$dir/sharded" > "$dir/sharded.log" 2>&1 ||
  { echo "FAIL: FSDP import"; cat "$dir/sharded.log"; exit 1; }
# The single process takes the weights from model.hf_assets_path (no initial_load_path), a
# folder holding the export and the tokenizer, as an HF model download does.
tokdir=""; prev=""
for a in "$@"; do [ "$prev" = "--model.hf_assets_path" ] && tokdir=$a; prev=$a; done
mkdir -p "$dir/assets" && cp "$hf"/* "$dir/assets/" && cp "$tokdir"/tokenizer* "$dir/assets/"
single=("${args[@]}" --model.hf_assets_path "$dir/assets" --checkpoint.initial_load_in_hf --training.steps 1
        --training.global_batch_size 2 --training.local_batch_size 2)
"$run_train" "${single[@]}" --job.dump_folder "$dir/single" > "$dir/single.log" 2>&1 ||
  { echo "FAIL: single-process import from model.hf_assets_path"; cat "$dir/single.log"; exit 1; }
grep -q "loaded HF weights from '$dir/assets' (" "$dir/single.log" || { echo "FAIL: no import line from hf_assets_path"; exit 1; }
grep -q "loaded HF weights from '$hf' (" "$dir/sharded.log" || { echo "FAIL: no import line"; exit 1; }
a=$(grep -o '"loss":[0-9.]*' "$dir/sharded/metrics.jsonl" | cut -d: -f2); b=$(grep -o '"loss":[0-9.]*' "$dir/single/metrics.jsonl" | cut -d: -f2)
fresh=$(grep -o '"loss":[0-9.]*' "$dir/export/metrics.jsonl" | head -1 | cut -d: -f2)
echo "first loss from the HF export: FSDP $a, one process $b (a fresh model: $fresh)"
awk -v a="$a" -v b="$b" -v f="$fresh" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * b && a < f) }' ||
  { echo "FAIL: the imported model's losses differ, or it did not start from the trained weights"; exit 1; }
echo "ok"
