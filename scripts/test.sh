#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit, CLI end-to-end, MPI) with ctest,
# then every parser's fuzz target for $FUZZ_SECONDS each (default 20; 0 skips; scripts/fuzz.sh).
# GPU tests (label `gpu`) report themselves skipped where no GPU is present.
# Extra arguments go to ctest, e.g. ./scripts/test.sh -R config
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
./scripts/build.sh
# MPI tests run several ranks on this machine: one BLAS thread per rank, root allowed.
export OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j "${JOBS:-$(nproc)}" "$@")
if [ "${FUZZ_SECONDS:-20}" != 0 ] && [ $# -eq 0 ]; then
  ./scripts/fuzz.sh --seconds "${FUZZ_SECONDS:-20}"
fi
