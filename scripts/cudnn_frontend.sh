#!/usr/bin/env bash
# Fetches the cuDNN frontend's C++ headers (header-only, Apache-2.0; NVIDIA ships them on PyPI,
# not in Debian) into .deps/cudnn-frontend/include, once, for the CUDA build's fused attention
# (kernels/cudnn_attention.cpp). Only the wheel's include/ folder is kept; nothing is installed
# into Python. Never fails: without the headers the CUDA build leaves the cuDNN path out and
# attention runs titan.cpp's own kernels (docs/cuda.md, "Attention").
set -uo pipefail
cd "$(dirname "$0")/.."
VERSION=${CUDNN_FRONTEND_VERSION:-1.32.0}
dest=.deps/cudnn-frontend
if [ -f "$dest/include/cudnn_frontend.h" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$VERSION" ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "nvidia-cudnn-frontend==$VERSION" >/dev/null 2>&1; then
  echo "[setup] cuDNN frontend $VERSION: could not download it from PyPI; the CUDA build will use titan.cpp's attention kernels only" >&2
  exit 0
fi
rm -rf "$dest" && mkdir -p "$dest"
if ! python3 - "$tmp" "$dest" <<'PY'
import os, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
wheel = next(os.path.join(src, f) for f in os.listdir(src) if f.endswith(".whl"))
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("include/") and not name.endswith("/"):
            z.extract(name, dest)
PY
then
  rm -rf "$dest"  # no half-extracted tree for CMake to find
  echo "[setup] cuDNN frontend $VERSION: could not unpack the wheel; the CUDA build will use titan.cpp's attention kernels only" >&2
  exit 0
fi
echo "$VERSION" > "$dest/VERSION"
echo "[setup] cuDNN frontend $VERSION headers in $dest/include"
