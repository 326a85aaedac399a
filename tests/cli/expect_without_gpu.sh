#!/usr/bin/env bash
# expect.sh for behaviour that only holds where no GPU is visible (e.g. training.device = cuda must
# fail clearly). Where a GPU is visible the test reports itself skipped (exit 77).
# usage: expect_without_gpu.sh GPU_TESTS RC REGEX -- COMMAND...
gpu_tests=$1; shift
"$gpu_tests" --has-gpu
case $? in
  77) ;;
  0) echo "a GPU is visible: skipped"; exit 77 ;;
  *) echo "FAIL: $gpu_tests --has-gpu did not run"; exit 1 ;;
esac
exec "$(dirname "$0")/expect.sh" "$@"
