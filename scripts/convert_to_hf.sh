#!/usr/bin/env bash
# Converts a titan.cpp checkpoint step (saved on any mesh) to HF Llama safetensors + config.json,
# loadable with transformers' LlamaForCausalLM.from_pretrained(OUT_DIR).
# usage: scripts/convert_to_hf.sh outputs/checkpoint/step-1000 OUT_DIR [float32|bfloat16|float16]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
[ -x "$BUILD_DIR/apps/convert_checkpoint" ] || ./scripts/build.sh >/dev/null
exec "$BUILD_DIR/apps/convert_checkpoint" "$@"
