#!/usr/bin/env bash
# tokenize_dataset writes a .tokens file that run_train trains from (training.dataset_path).
# usage: check_token_file.sh TOKENIZE_DATASET RUN_TRAIN CONFIG TOKENIZER_DIR CORPUS
set -eu
tokenize=$1; run_train=$2; config=$3; tokenizer=$4; corpus=$5
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$tokenize" --input "$corpus" --output "$dir/corpus.tokens" --hf_assets_path "$tokenizer"
"$run_train" --job.config_file "$config" --model.hf_assets_path "$tokenizer" --training.dataset_path "$dir/corpus.tokens" \
  --training.seq_len 32 --training.local_batch_size 2 --training.steps 2 --metrics.log_freq 1 --job.dump_folder "$dir/out" \
  2> "$dir/log"
grep -q "step     2  loss" "$dir/log" || { echo "FAIL: no training from the token file"; cat "$dir/log"; exit 1; }
grep "data:" "$dir/log"
echo "ok"
