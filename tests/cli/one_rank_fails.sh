#!/usr/bin/env bash
# Under mpirun: rank 1 gets a dataset path that does not exist, rank 0 a good one. The job must
# stop on every rank with a non-zero exit and rank 1's error, instead of rank 0 waiting forever.
# usage (as the mpirun target): one_rank_fails.sh RUN_TRAIN ARGS...
run_train=$1; shift
if [ "${OMPI_COMM_WORLD_RANK:-0}" = "1" ]; then
  exec "$run_train" "$@" --training.dataset_path /nonexistent/rank1-only.jsonl
fi
exec "$run_train" "$@"
