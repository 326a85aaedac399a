#!/usr/bin/env bash
# compile.enable changes nothing a step computes: trains the same run with and without it (10
# steps, validating at steps 5 and 10) and requires every logged loss, gradient norm and
# validation loss in metrics.jsonl to be the same digits (the same bits: the replayed or checked
# step runs the same ops in the same order; validation between replays sees what it would after
# an eager step), and the log line that says what compile.enable did.
#   cpu: the CPU checks at the capture step that it could be replayed, then runs the captured
#        body again each step, with the reset a GPU run makes after each validation;
#   gpu: the step is captured as a CUDA graph and replayed (with debug.deterministic, for cuDNN
#        attention's deterministic backward); a steady-state replay makes no host
#        sync (the log step's read is the one: host_syncs 1/5 at log_freq 5). Exits 77 (ctest:
#        skipped) where no GPU is visible.
# usage: check_compile.sh cpu RUN_TRAIN [ARGS...] | check_compile.sh gpu GPU_TESTS RUN_TRAIN [ARGS...]
# COMPILE_LAUNCHER (environment), if set, starts run_train ("mpirun -np 2", say).
set -u
mode=$1; shift
if [ "$mode" = gpu ]; then
  . "$(dirname "$0")/skip_without_gpu.sh"
  skip_without_gpu "$1"
  shift
  # debug.deterministic: cuDNN attention's default backward accumulates with atomics, so two
  # eager runs would already differ in the last digits (docs/training.md, "Determinism").
  device=(--training.device cuda --debug.deterministic)
  expect="captured as a CUDA graph; every later step replays it"
else
  device=()
  expect="ran eagerly under the capture's check"
fi
run_train=$1; shift
read -r -a launcher <<< "${COMPILE_LAUNCHER:-}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for c in eager compiled; do
  flag=(); [ $c = compiled ] && flag=(--compile.enable)
  "${launcher[@]}" "$run_train" "$@" "${device[@]}" "${flag[@]}" --training.steps 10 --metrics.log_freq 5 --job.dump_folder "$dir/$c" \
    --validation.enable --validation.freq 5 --validation.steps 2 --validation.local_batch_size 2 --validation.seq_len 32 \
    > "$dir/$c.log" 2>&1 || { tail -20 "$dir/$c.log"; echo "FAIL: the $c run failed"; exit 1; }
  # loss and grad_norm of every logged step, as written
  grep -o '"grad_norm":[^,]*\|"loss":[^,]*\|"step":[0-9]*\|"validation_loss":[^,}]*' "$dir/$c/metrics.jsonl" |
    paste -sd' ' > "$dir/$c.values"
done
grep -E "compile.enable" "$dir/compiled.log"
if ! grep -qF "$expect" "$dir/compiled.log"; then
  echo "FAIL: the compiled run's log lacks \"$expect\""
  exit 1
fi
if ! cmp -s "$dir/eager.values" "$dir/compiled.values"; then
  echo "FAIL: losses or gradient norms differ with compile.enable"
  echo "eager:    $(cat "$dir/eager.values")"
  echo "compiled: $(cat "$dir/compiled.values")"
  exit 1
fi
if [ "$mode" = gpu ]; then
  syncs=$(grep '"step":10[,}]' "$dir/compiled/metrics.jsonl" | grep -o '"host_syncs":[0-9.e-]*' | cut -d: -f2)
  if [ "$(awk -v x="${syncs:-nan}" 'BEGIN { printf "%.6f", x }')" != 0.200000 ]; then
    echo "FAIL: host syncs per step over the replayed steps 6-10 = ${syncs:-none}, want 0.2 (the log step's read)"
    exit 1
  fi
fi
echo "ok: the same losses and gradient norms with compile.enable ($(wc -w < "$dir/eager.values") values)"
