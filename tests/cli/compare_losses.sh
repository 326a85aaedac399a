#!/usr/bin/env bash
# Runs run_train twice and compares the per-step losses and gradient norms of the two runs.
# usage: compare_losses.sh MODE TOL RUN_TRAIN [COMMON ARGS...] --a [ARGS A...] --b [ARGS B...]
#   MODE close:  every |loss_a - loss_b| <= TOL * loss_b, and the same for the grad norms
#   MODE differ: the runs differ somewhere, and every |loss_a - loss_b| <= TOL * loss_b
#   TOL "L/G" gives the grad norms their own tolerance G ("-": not compared); the gradient norm
#   reacts faster than the loss to float8 rounding flips, so those tests loosen it.
# COMPARE_B_LAUNCHER (environment), e.g. "mpirun -np 2", prefixes run b (multi-rank runs);
# COMPARE_A_LAUNCHER likewise run a. COMPARE_A_METRICS, a metrics.jsonl, stands for run a (not run).
# Losses are read at full precision from each run's metrics.jsonl (needs --metrics.log_freq 1).
set -eu
mode=$1; tol=${2%%/*}; gn_tol=${2#*/}; run_train=$3; shift 3
common=(); a=(); b=(); target=common
for arg in "$@"; do
  case "$arg" in
    --a) target=a ;;
    --b) target=b ;;
    *) eval "$target+=(\"\$arg\")" ;;
  esac
done
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
read -r -a launcher_a <<< "${COMPARE_A_LAUNCHER:-}"
if [ -n "${COMPARE_A_METRICS:-}" ]; then  # run a made elsewhere (the GPU check's carried CPU reference)
  mkdir -p "$dir/a" && cp "$COMPARE_A_METRICS" "$dir/a/metrics.jsonl"
else
  "${launcher_a[@]}" "$run_train" "${common[@]}" "${a[@]}" --job.dump_folder "$dir/a" 2> "$dir/a.log" || { cat "$dir/a.log"; exit 1; }
fi
read -r -a launcher <<< "${COMPARE_B_LAUNCHER:-}"
"${launcher[@]}" "$run_train" "${common[@]}" "${b[@]}" --job.dump_folder "$dir/b" 2> "$dir/b.log" || { cat "$dir/b.log"; exit 1; }
# Full-precision losses and gradient norms from rank 0's metrics.jsonl (the log line rounds);
# both are global quantities, so both must agree.
field() { grep -o "\"$2\":[-0-9.eE+naif]*" "$1/metrics.jsonl" | cut -d: -f2; }
paste <(field "$dir/a" loss) <(field "$dir/b" loss) | sed 's/$/\tloss/' > "$dir/pairs"
[ "$gn_tol" = "-" ] || paste <(field "$dir/a" grad_norm) <(field "$dir/b" grad_norm) | sed 's/$/\tgrad_norm/' >> "$dir/pairs"
[ -s "$dir/pairs" ] || { echo "FAIL: no loss lines"; cat "$dir/a.log"; exit 1; }
cat "$dir/pairs"
awk -v tol="$tol" -v gn_tol="$gn_tol" -v mode="$mode" '
  NF != 3 { uneven = 1; next }
  { t = $3 == "grad_norm" ? gn_tol : tol; d = $1 - $2; if (d < 0) d = -d; if (d > t * $2) bad = 1; if (d > 0 && $3 == "loss") differ = 1 }
  END { if (uneven) { print "FAIL: the runs logged different numbers of steps"; exit 1 }
        if (bad) { print "FAIL: losses (tol " tol ") or grad norms (tol " gn_tol ") differ too much"; exit 1 }
        if (mode == "differ" && !differ) { print "FAIL: the runs should differ"; exit 1 }
        print "ok" }' "$dir/pairs"
