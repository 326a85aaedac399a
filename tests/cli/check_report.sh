#!/usr/bin/env bash
# The end of a run and its terminal: report.html and the progress line.
#   On a terminal (util-linux `script` gives the run a pty): the progress line with its ETA is
#   drawn, the log lines still print, and the last line names report.html.
#   Piped: no progress line (no ANSI erase, no bar), the same report.
# report.html: one chart per series (loss, grad_norm, lr, tokens/s; validation adds one), a row per
# step, the plan, and nothing that needs the network.
# usage: check_report.sh RUN_TRAIN CONFIG [EXTRA ARGS...]
set -eu
run_train=$1; config=$2; shift 2
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
args=(--job.config_file "$config" --training.device cpu --training.seq_len 32 --training.local_batch_size 2
      --training.steps 4 --metrics.log_freq 2 --validation.enable --validation.freq 2 --validation.steps 1
      --validation.seq_len 32 "$@")
quoted=$(printf '%q ' "$run_train" "${args[@]}" --job.dump_folder "$dir/tty")
script -qec "$quoted" /dev/null > "$dir/tty.log" 2>&1 || { echo "FAIL: the run on a pty failed"; cat "$dir/tty.log"; exit 1; }
grep -aqE '\[#+-*\] 2/4 +50%  loss [0-9.]+  [0-9.]+ (steps/s|s/step)  ETA 0:[0-9]{2}:[0-9]{2}' "$dir/tty.log" ||
  { echo "FAIL: no progress line for step 2 on a terminal"; cat "$dir/tty.log"; exit 1; }
grep -aq "step     4  loss" "$dir/tty.log" || { echo "FAIL: the log lines are missing on a terminal"; exit 1; }
grep -aq "report: $dir/tty/report.html" "$dir/tty.log" || { echo "FAIL: the run does not name its report"; exit 1; }

"$run_train" "${args[@]}" --job.dump_folder "$dir/pipe" > "$dir/pipe.log" 2>&1 || { echo "FAIL: the piped run failed"; cat "$dir/pipe.log"; exit 1; }
if grep -aqE $'\033\\[K|\\] [0-9]+/4 ' "$dir/pipe.log"; then echo "FAIL: a progress line went to a pipe"; exit 1; fi
r="$dir/pipe/report.html"
[ -s "$r" ] || { echo "FAIL: no $r"; exit 1; }
[ "$(grep -o '<svg' "$r" | wc -l)" = 5 ] || { echo "FAIL: $r has $(grep -o '<svg' "$r" | wc -l) charts, expected 5 (4 series + validation)"; exit 1; }
[ "$(grep -o '<tr><td>' "$r" | wc -l)" = 4 ] || { echo "FAIL: $r does not have one row per step"; exit 1; }
grep -q '<pre>.*parameters' "$r" || grep -q 'parameters' "$r" || { echo "FAIL: $r lacks the plan"; exit 1; }
if grep -Eo '(src|href)="[^"]*"' "$r" | grep -q .; then echo "FAIL: $r loads something: $(grep -Eo '(src|href)="[^"]*"' "$r" | head -1)"; exit 1; fi
echo "ok: progress line on a terminal only; report.html with 5 charts, 4 step rows and the plan"
