#!/usr/bin/env bash
# expect.sh for behaviour that only holds where no GPU is visible (e.g. TITAN_DEVICE=cuda must
# fail clearly). Where a GPU is visible the test reports itself skipped (exit 77).
# usage: expect_without_gpu.sh GPU_TESTS RC REGEX -- COMMAND...
gpu_tests=$1; shift
"$gpu_tests" --list-test-names-only > /dev/null 2>&1
[ $? -eq 77 ] || { echo "a GPU is visible: skipped"; exit 77; }
exec "$(dirname "$0")/expect.sh" "$@"
