#!/usr/bin/env bash
# model.print_after_conversion: after the converters ran, the model is printed as TorchTitan's
# print(model) (PyTorch's nested repr) with FQNs and shapes; converted layers show as
# Float8Linear with torchao's cast_configs, filtered ones stay Linear. Without the key, no print.
# usage: check_print_after_conversion.sh RUN_TRAIN FLOAT8_CONFIG [EXTRA ARGS...]
set -eu
run_train=$1; config=$2; shift 2
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
args=(--job.config_file "$config" --training.device cpu --training.seq_len 32 --training.local_batch_size 2
      --training.steps 1 "$@")
"$run_train" "${args[@]}" --model.print_after_conversion --job.dump_folder "$dir/a" > "$dir/on.log" 2>&1 ||
  { echo "FAIL: run failed"; cat "$dir/on.log"; exit 1; }
expect() {
  grep -Fq -- "$1" "$dir/on.log" || { echo "FAIL: the printed model lacks: $1"; cat "$dir/on.log"; exit 1; }
}
expect "model after conversion:"
expect "Transformer("
expect "  (tok_embeddings): Embedding(2048, 256)  # tok_embeddings.weight [2048, 256]"
expect "      (attention): Attention("
expect "        (wq): Float8Linear(in_features=256, out_features=256, bias=False, recipe=tensorwise, cast_configs=i:dyn_ten_e4m3,w:dyn_ten_e4m3,go:dyn_ten_e5m2)  # layers.0.attention.wq.weight [256, 256]"
expect "        (w2): Float8Linear(in_features=768, out_features=256, bias=False, recipe=tensorwise, cast_configs=i:dyn_ten_e4m3,w:dyn_ten_e4m3,go:dyn_ten_e5m2)  # layers.5.feed_forward.w2.weight [256, 768]"
expect "  (output): Linear(in_features=256, out_features=2048, bias=False)  # output.weight [2048, 256]"
expect " 42 Float8Linear, 1 Linear, "
expect "6,163,712 parameters"
"$run_train" "${args[@]}" --job.dump_folder "$dir/b" > "$dir/off.log" 2>&1 || { echo "FAIL: run failed"; cat "$dir/off.log"; exit 1; }
if grep -q "model after conversion" "$dir/off.log"; then echo "FAIL: printed without the key"; exit 1; fi
echo "ok: the converted model is printed with Float8Linear layers, FQNs and shapes, only when asked"
