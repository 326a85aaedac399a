#!/usr/bin/env bash
# The step's losses and gradient norm are read back only on steps that need them (log, validation,
# checkpoint and last steps): reading later changes no value, and a divergence is still caught
# before anything is saved.
#  1. log_freq 3 logs steps 1, 3, 6 with exactly the loss and grad norm log_freq 1 logs there, and
#     its report.html has every step's loss, grad norm and lr, the same as log_freq 1's;
#  2. a run that diverges at step 2 with log_freq 4 and a checkpoint due at step 3 stops at step 3
#     naming step 2, and writes no checkpoint.
# usage: check_deferred_reads.sh RUN_TRAIN [RUN_TRAIN ARGS...]
set -u
run_train=$1; shift
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
status=0
for f in 1 3; do
  "$run_train" "$@" --training.steps 6 --metrics.log_freq $f --job.dump_folder "$dir/f$f" > "$dir/f$f.log" 2>&1 ||
    { tail -5 "$dir/f$f.log"; echo "FAIL: log_freq $f run failed"; exit 1; }
done
values() { grep -o '"grad_norm":[^,]*\|"loss":[^,]*\|"step":[0-9]*' "$1/metrics.jsonl" | paste -d' ' - - - | sort; }
want=$(values "$dir/f1" | grep -E '"step":(1|3|6)$')
got=$(values "$dir/f3")
if [ -n "$want" ] && [ "$want" = "$got" ]; then
  echo "ok: log_freq 3 logs the same values at steps 1, 3, 6:"; echo "$got"
else
  echo "FAIL: log_freq 3 logged"; echo "$got"; echo "want"; echo "$want"; status=1
fi
# The report's table: every step, with the same loss, grad norm and lr either way.
rows() { grep -o '<tr><td>[0-9]*</td><td>[^<]*</td><td>[^<]*</td><td>[^<]*</td>' "$1/report.html"; }
if [ "$(rows "$dir/f3" | wc -l)" = 6 ] && [ "$(rows "$dir/f3")" = "$(rows "$dir/f1")" ]; then
  echo "ok: report.html has the same 6 rows"
else
  echo "FAIL: report.html rows with log_freq 3:"; rows "$dir/f3"; echo "with log_freq 1:"; rows "$dir/f1"; status=1
fi
"$run_train" "$@" --training.steps 8 --metrics.log_freq 4 --optimizer.lr 1e9 --lr_scheduler.warmup_steps 1 \
  --checkpoint.enable --checkpoint.interval 3 --job.dump_folder "$dir/nan" > "$dir/nan.log" 2>&1
rc=$?
if [ $rc -ne 1 ] || ! grep -qE 'step 2: loss is -?nan' "$dir/nan.log"; then
  tail -5 "$dir/nan.log"; echo "FAIL: the diverging run should exit 1 naming step 2 (rc $rc)"; status=1
elif ls "$dir/nan/checkpoint" 2>/dev/null | grep -q 'step-'; then
  echo "FAIL: a checkpoint was written after the divergence: $(ls "$dir/nan/checkpoint")"; status=1
else
  echo "ok: divergence at step 2 found at step 3's read, no checkpoint written"
fi
exit $status
