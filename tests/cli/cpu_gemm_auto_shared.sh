#!/usr/bin/env bash
# training.cpu_gemm = "auto" on a machine with no cached choice: three runs started together (as
# the ranks of one machine are) measure once under the cache's flock and all use that library; a
# later run reads it. usage: cpu_gemm_auto_shared.sh RUN_TRAIN CONFIG
set -eu
run_train=$1; config=$2
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
export XDG_CACHE_HOME=$dir/cache
for i in 1 2 3; do
  "$run_train" --job.config_file "$config" --training.device cpu --dry-run > "$dir/plan$i" 2>&1 &
done
wait
"$run_train" --job.config_file "$config" --training.device cpu --dry-run > "$dir/plan4" 2>&1
lib() { sed -n 's/^  cpu gemm     \([a-z]*\) (kernel .*/\1/p' "$dir/plan$1"; }
for i in 1 2 3 4; do
  [ -n "$(lib $i)" ] || { echo "FAIL: plan $i has no cpu gemm line"; cat "$dir/plan$i"; exit 1; }
  [ "$(lib $i)" = "$(lib 1)" ] || { echo "FAIL: plan $i uses $(lib $i), plan 1 $(lib 1)"; exit 1; }
done
measured=$(cat "$dir"/plan[123] | grep -c "auto: measured fastest now" || true)
[ "$measured" = 1 ] || { echo "FAIL: $measured of the concurrent runs measured (want 1)"; grep "cpu gemm  " "$dir"/plan*; exit 1; }
grep -q "auto: measured fastest earlier, cached in $dir/cache/titan/cpu_gemm_choice.json" "$dir/plan4" ||
  { echo "FAIL: the later run did not read the cached choice"; cat "$dir/plan4"; exit 1; }
grep -h "cpu gemm  " "$dir/plan1"
echo "ok: all runs use $(lib 1)"
