#!/usr/bin/env bash
# Exact resume: a straight run against the same run interrupted by a fault and resumed from its
# checkpoint, possibly on another number of ranks (another mesh).
# usage: check_resume.sh MODE TOL MPIRUN RUN_TRAIN [COMMON ARGS...] --first [ARGS...] --resume [ARGS...]
#   The straight and the interrupted run use COMMON + FIRST on $FIRST_NP ranks; the resumed run
#   COMMON + RESUME on $RESUME_NP ranks. $FAULT (debug.fault) interrupts; $EXPECT_STEP is the step
#   the resumed run must load.
#   MODE bitwise: every step's loss is identical to the last digit; MODE close: within TOL relative.
set -eu
mode=$1; tol=$2; mpirun=$3; run_train=$4; shift 4
common=(); first=(); resume=(); target=common
for arg in "$@"; do
  case "$arg" in
    --first) target=first ;;
    --resume) target=resume ;;
    *) eval "$target+=(\"\$arg\")" ;;
  esac
done
read -r -a mpi <<< "$mpirun"
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"${mpi[@]}" -np "$FIRST_NP" "$run_train" "${common[@]}" "${first[@]}" --job.dump_folder "$dir/straight" > "$dir/straight.log" 2>&1 ||
  { echo "FAIL: the straight run"; cat "$dir/straight.log"; exit 1; }
if "${mpi[@]}" -np "$FIRST_NP" "$run_train" "${common[@]}" "${first[@]}" --debug.fault "$FAULT" --job.dump_folder "$dir/run" > "$dir/first.log" 2>&1; then
  echo "FAIL: the run with debug.fault = $FAULT should have died"; cat "$dir/first.log"; exit 1
fi
echo "interrupted by debug.fault = $FAULT; left: $(ls "$dir/run/checkpoint" | tr '\n' ' ')"
"${mpi[@]}" -np "$RESUME_NP" "$run_train" "${common[@]}" "${resume[@]}" --job.dump_folder "$dir/run" > "$dir/resume.log" 2>&1 ||
  { echo "FAIL: the resumed run"; cat "$dir/resume.log"; exit 1; }
grep -q "checkpoint: loaded '.*/step-$EXPECT_STEP' (step $EXPECT_STEP)" "$dir/resume.log" ||
  { echo "FAIL: the resumed run did not load step $EXPECT_STEP"; grep -E 'checkpoint|error' "$dir/resume.log"; exit 1; }
# Rank 0 reads only the checkpoint chunks that hold its rows: at most 10% (+1 MiB) above the
# params and AdamW state it owns on the new mesh ($READ_FACTOR times that: a tensor-parallel rank
# reads whole rows of the weights split on their columns, wo and w2).
read_mib=$(grep -o 'this rank read [0-9.]* MiB' "$dir/resume.log" | head -1 | grep -o '[0-9.]*' || true)
owned_mib=$(grep -o 'memory/rank: params [0-9.]* MiB + grads [0-9.]* MiB + AdamW state [0-9.]* MiB' "$dir/resume.log" |
            head -1 | awk '{ print $3 + $12 }' || true)
echo "rank 0 read $read_mib MiB of checkpoint data for $owned_mib MiB of owned params + AdamW state"
awk -v r="$read_mib" -v o="$owned_mib" -v f="${READ_FACTOR:-1}" 'BEGIN { exit !(r != "" && o > 0 && r <= f * 1.1 * o + 1) }' ||
  { echo "FAIL: the resumed rank read more than the rows it owns"; exit 1; }
[ -z "$(ls -d "$dir"/run/checkpoint/*.tmp 2>/dev/null)" ] || { echo "FAIL: a .tmp folder survived the resume"; exit 1; }
# step -> loss; a step logged twice (before the crash and after the resume) keeps its last value.
losses() { grep -o '"loss":[-0-9.eE+naif]*,.*"step":[0-9]*' "$1" | sed 's/"loss":\([^,]*\),.*"step":\([0-9]*\)/\2 \1/' |
           awk '{ v[$1] = $2; if ($1 > n) n = $1 } END { for (i = 1; i <= n; i++) print i, v[i] }'; }
join <(losses "$dir/straight/metrics.jsonl") <(losses "$dir/run/metrics.jsonl") > "$dir/pairs"
cat "$dir/pairs"
[ "$(wc -l < "$dir/pairs")" -eq "$(losses "$dir/straight/metrics.jsonl" | wc -l)" ] || { echo "FAIL: steps missing"; exit 1; }
awk -v mode="$mode" -v tol="$tol" '
  { d = $2 - $3; if (d < 0) d = -d
    if (mode == "bitwise" && $2 != $3) { print "FAIL: step " $1 " differs: " $2 " vs " $3; bad = 1 }
    if (mode == "close" && d > tol * $3) { print "FAIL: step " $1 " differs by more than " tol " relative"; bad = 1 } }
  END { if (bad) exit 1; print "ok" }' "$dir/pairs"
