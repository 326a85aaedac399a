#!/usr/bin/env bash
# A checkpoint error that only some ranks see ends every rank at once with that rank's message:
# a flipped byte in rank-00001's rows, resumed on a 2x2 HSDP mesh (4 ranks; the ranks of shard
# index 1 read those rows). The job must stop within seconds (not after the 300 s comm timeout)
# with a non-zero exit, print the checksum error naming the file and tensor, and no rank may be
# reported as "not answering".
# usage: check_checkpoint_rank_failure.sh MPIRUN... -- RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
. "$(dirname "$0")/launch_args.sh"
args=(--job.config_file "$config" --training.seq_len 32 --training.local_batch_size 1 --training.global_batch_size 4
      --metrics.log_freq 1 --checkpoint.enable --checkpoint.interval 2 --no-checkpoint.last_save_model_only
      --job.dump_folder "$dir/run" "$@")
"${launcher[@]}" -np 2 "$run_train" "${args[@]}" --training.steps 2 > "$dir/make.log" 2>&1 ||
  { echo "FAIL: making the checkpoint on 2 ranks"; cat "$dir/make.log"; exit 1; }
file="$dir/run/checkpoint/step-2/rank-00001.safetensors"
printf '\x55' | dd of="$file" bs=1 seek=$(( $(stat -c %s "$file") - 100 )) conv=notrunc 2>/dev/null
start=$(date +%s)
set +e
timeout 150 "${launcher[@]}" -np 4 "$run_train" "${args[@]}" --training.steps 4 --parallelism.data_parallel_replicate_degree 2 \
  > "$dir/out.log" 2>&1
rc=$?
set -e
took=$(( $(date +%s) - start ))
echo "exit $rc after ${took}s:"; grep -E '^error' "$dir/out.log" | cut -c1-300
status=0
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { echo "FAIL: exit $rc (124: killed by the test's timeout, the ranks hung)"; status=1; }
[ "$took" -lt 60 ] || { echo "FAIL: took ${took}s; the ranks waited for the failed one"; status=1; }
grep -Eq "^error: \[rank [13]\] checkpoint: '.*rank-00001.safetensors' is corrupt or truncated: tensor '.*' rows [0-9]+\.\.[0-9]+ do not match their checksum; load another step" "$dir/out.log" ||
  { echo "FAIL: the checksum error of the rank that read the bad rows is not shown"; cat "$dir/out.log" | tail -20; status=1; }
! grep -Eq 'not answering|did not reach|internal error' "$dir/out.log" || { echo "FAIL: reported as a hang or an internal error"; status=1; }
[ $status -eq 0 ] && echo "ok"
exit $status
