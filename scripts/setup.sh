#!/usr/bin/env bash
# Installs titan.cpp's build dependencies from Debian's packages: only the missing ones, so it is
# fast and quiet on a machine that already has them. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake
  libtomlplusplus-dev libspdlog-dev libcli11-dev catch2
  libopenmpi-dev openmpi-bin libopenblas-dev libblis-dev libdnnl-dev
  nlohmann-json3-dev libpcre2-dev libxxhash-dev
  clang libclang-rt-14-dev
  iproute2
)

# The CUDA build's cuDNN attention needs the cuDNN frontend's headers, which Debian does not package.
if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null; then
  "$(dirname "$0")/cudnn_frontend.sh"
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "[setup] all dependencies are installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "[setup] error: missing packages (${missing[*]}) and not root; run as root or install them" >&2
    exit 1
  fi
fi
echo "[setup] installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
echo "[setup] done"
