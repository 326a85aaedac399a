# Sourced by the GPU CLI checks: skip_without_gpu GPU_TESTS exits 77 (ctest: skipped) when no CUDA
# device is visible to GPU_TESTS (titan_gpu_tests --has-gpu), and 1 when that binary cannot run.
skip_without_gpu() {
  "$1" --has-gpu
  case $? in
    0) ;;
    77) echo "no CUDA device visible: skipped"; exit 77 ;;
    *) echo "FAIL: $1 --has-gpu did not run"; exit 1 ;;
  esac
}
