#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.cpp: every parser of user input) with clang,
# AddressSanitizer and UBSan into build-fuzz/ (or $FUZZ_BUILD_DIR), and runs each for a bounded
# time from its seed corpus (tests/fuzz/corpus/<name>/). Prints one line per target; exits 1 if
# any target crashed, leaked, hung or threw anything but titan::UserError (the reproducer is kept
# in the build folder's artifacts/).
#   ./scripts/fuzz.sh                 # 60 s per target
#   ./scripts/fuzz.sh --seconds 600   # longer (docs/testing.md records the longest clean run)
#   ./scripts/fuzz.sh --only config   # one target
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=60
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_EACH="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    *) echo "fuzz.sh: unknown option $1 (use --seconds N, --only NAME)" >&2; exit 2 ;;
  esac
done
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${JOBS:-$(nproc)}
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is missing; run ./scripts/setup.sh" >&2; exit 2; }

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DTITAN_FUZZ=ON -DTITAN_ENABLE_CUDA=OFF >/dev/null
cmake --build "$BUILD" -j "$JOBS" >/dev/null

mkdir -p "$BUILD/artifacts"
failed=0
for src in tests/fuzz/fuzz_*.cpp; do
  target=$(basename "$src" .cpp)
  name=${target#fuzz_}
  [ -n "$ONLY" ] && [ "$ONLY" != "$name" ] && continue
  seeds=tests/fuzz/corpus/$name
  work="$BUILD/corpus/$name"  # grows across runs; the committed seeds stay as they are
  mkdir -p "$work"
  log="$BUILD/$target.log"
  # -rss_limit_mb: a parser that allocates without bound fails; -timeout: one input may take 10 s.
  if ASAN_OPTIONS=detect_leaks=1 OPENBLAS_NUM_THREADS=1 "$BUILD/tests/fuzz/$target" "$work" "$seeds" \
       -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=3072 -max_len=65536 -print_final_stats=1 \
       -artifact_prefix="$BUILD/artifacts/$name-" >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    printf '[fuzz] %-22s clean  %8s runs in %s s  (corpus %s files)\n' "$name" "$runs" "$SECONDS_EACH" "$(ls "$work" | wc -l)"
  else
    failed=1
    printf '[fuzz] %-22s FAILED, see %s and %s/artifacts/%s-*\n' "$name" "$log" "$BUILD" "$name"
    grep -m5 -E 'ERROR|SUMMARY|terminate|what\(\)' "$log" | sed 's/^/[fuzz]   /' || true
  fi
done
exit $failed
