#!/usr/bin/env bash
# A full disk: the run's folder on a 100 MiB tmpfs (a private mount namespace, so nothing leaks)
# holds step-1 (70 MiB) but not step-2. The save of step 2 must fail with one line saying "no
# space left on device" (exit 1), and step-1 must stay intact: the next run resumes from it.
# Needs root (or user namespaces) for the mount; exits 77 (skipped) where mounting is not allowed.
# usage: check_checkpoint_disk_full.sh RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
if [ "${1:-}" = "--inside" ]; then
  shift; small=$1; run_train=$2; config=$3; shift 3
  mount -t tmpfs -o size=100m tmpfs "$small"
  args=(--job.config_file "$config" --training.seq_len 32 --training.local_batch_size 2 --metrics.log_freq 1
        --checkpoint.enable --checkpoint.interval 1 --no-checkpoint.last_save_model_only --job.dump_folder "$small/run" "$@")
  status=0
  set +e; "$run_train" "${args[@]}" --training.steps 2 > "$small/../full.log" 2>&1; rc=$?; set -e
  echo "exit $rc: $(grep '^error' "$small/../full.log" | cut -c1-300)"
  [ "$rc" -eq 1 ] || { echo "FAIL: expected exit 1"; status=1; }
  grep -Eq "^error: checkpoint: saving step 2 failed .*cannot write '.*step-2.tmp/rank-00000.safetensors': no space left on device.*the previous checkpoint is intact" \
    "$small/../full.log" || { echo "FAIL: the error does not say 'no space left on device'"; cat "$small/../full.log"; status=1; }
  [ "$(grep -c '^error: ' "$small/../full.log")" -eq 1 ] || { echo "FAIL: not one error line"; status=1; }
  [ -f "$small/run/checkpoint/step-1/metadata.json" ] || { echo "FAIL: step-1 is gone"; status=1; }
  set +e; "$run_train" "${args[@]}" --training.steps 1 > "$small/../resume.log" 2>&1; rc=$?; set -e
  grep -q "checkpoint: loaded '.*step-1' (step 1) .*all state restored" "$small/../resume.log" && [ "$rc" -eq 0 ] ||
    { echo "FAIL: step-1 does not resume after the failed save (exit $rc)"; grep -E 'error|checkpoint' "$small/../resume.log"; status=1; }
  [ $status -eq 0 ] && echo "ok: step-1 intact and resumable"
  exit $status
fi
run_train=$1; config=$2; shift 2
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/probe" "$dir/small"
if ! unshare -m sh -c 'mount -t tmpfs -o size=1m tmpfs "$0"' "$dir/probe" 2>/dev/null; then
  echo "skipped: cannot mount a tmpfs here (needs root or user namespaces)"; exit 77
fi
set +e; unshare -m "$0" --inside "$dir/small" "$run_train" "$config" "$@"; rc=$?; set -e
exit $rc
