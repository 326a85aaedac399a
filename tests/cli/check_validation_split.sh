#!/usr/bin/env bash
# Validation split over the data-parallel ranks: 5 validation batches evaluated by 1, 2 and 3
# ranks (FSDP shard 1/2/3; and TP 2 on 2 and 4 ranks; with 2 and 3 ranks some ranks run a padding forward that is not
# counted) give the same validation loss as one process, to summation-order rounding (1e-6
# relative), and the log says 5 batches. optimizer.lr 0 keeps the weights at their
# initialisation, so only the evaluation differs between the runs, not the training before it.
# usage: check_validation_split.sh MPIRUN... -- RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
. "$(dirname "$0")/launch_args.sh"
args=(--job.config_file "$config" --training.device cpu --training.seq_len 32 --training.local_batch_size 1
      --training.global_batch_size 6 --training.steps 2 --metrics.log_freq 1 --validation.enable --validation.freq 2
      --validation.steps 5 --validation.seq_len 32 --validation.local_batch_size 2 --optimizer.lr 0 "$@")
for n in 1 2 3; do
  "${launcher[@]}" -np $n "$run_train" "${args[@]}" --job.dump_folder "$dir/np$n" > "$dir/np$n.log" 2>&1 ||
    { echo "FAIL: the $n-rank run failed"; cat "$dir/np$n.log"; exit 1; }
  grep -Eq "validate step +2  loss +[0-9.]+  \(5 batches\)" "$dir/np$n.log" || { echo "FAIL: $n ranks: no '(5 batches)' line"; cat "$dir/np$n.log"; exit 1; }
done
one=$(field np1 validation_loss)
# Tensor parallel: TP 2 (2 ranks, one data-parallel rank) and shard 2 x TP 2 (4 ranks): the TP
# ranks of a data-parallel rank evaluate the same batches (loss parallel), counted once. These
# runs are bf16 (the config's mixed precision): a row-wise layer's per-rank partial outputs are
# rounded to bf16 before they are summed, as in PyTorch, so TP agrees to 1e-4 (measured 1.5e-5),
# not to summation order.
for n in 2 4; do
  "${launcher[@]}" -np $n "$run_train" "${args[@]}" --parallelism.tensor_parallel_degree 2 --job.dump_folder "$dir/tp$n" \
    > "$dir/tp$n.log" 2>&1 || { echo "FAIL: the TP 2 run on $n ranks failed"; cat "$dir/tp$n.log"; exit 1; }
  grep -Eq "validate step +2  loss +[0-9.]+  \(5 batches\)" "$dir/tp$n.log" || { echo "FAIL: TP on $n ranks: no '(5 batches)' line"; exit 1; }
done
for n in 2 3 tp2 tp4; do
  case $n in tp*) run=$n tol=1e-4 ;; *) run=np$n tol=1e-6 ;; esac
  v=$(field $run validation_loss)
  awk -v a="$one" -v b="$v" -v n=$n -v tol=$tol 'BEGIN { d = (a > b ? a - b : b - a) / a; printf "%s: validation loss %s vs one process %s (rel %.2e)\n", n, b, a, d; exit !(d < tol) }' ||
    { echo "FAIL: $n ranks' validation loss differs from one process"; exit 1; }
done
echo "ok"
