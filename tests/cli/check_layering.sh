#!/usr/bin/env bash
# Static guard for DESIGN.md's layering (section 1, "Dependencies point downward only"; section 3,
# "The device seam"). Fails, naming file:line and the rule, when
#   1. a `#include "..."` in src/ or kernels/ reaches a layer its row below does not list;
#   2. `TITAN_WITH_CUDA` appears in src/ outside the op dispatch (src/ops/) and src/CMakeLists.txt
#      (the CUDA backend's registration lives in src/ops/cuda_backend.cpp, so it is covered);
#   3. `getenv` appears in src/ or kernels/ outside src/dist/world.cpp, or reads anything there but
#      the launcher's rank variables.
# usage: check_layering.sh [SOURCE_DIR]   (default: the repository this script is in)
set -u
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}

# Rule 1. One row per part of the tree: a path prefix (the longest matching prefix wins) | the
# layers its files may include (the first directory of the include path) | why. A bare include
# ("common.cuh") names a file beside the includer and is always allowed; include paths whose first
# directory is not a layer (a third-party header in quotes) are not checked.
RULES='
src/core/             | core                                                     | core is the bottom: it names no other layer and no backend (device code registers itself)
src/ops/cuda_ops.     | ops core kernels                                         | the op API'"'"'s CUDA side calls the kernel launchers
src/ops/cuda_backend. | ops core kernels                                         | the CUDA DeviceBackend wraps the CUDA runtime for core'"'"'s registry
src/ops/              | ops core                                                 | ops -> core; only the CUDA side of ops includes kernels/
src/autograd/         | autograd ops core                                        | autograd -> ops -> core
src/nn/               | nn autograd ops core                                     | nn -> autograd -> ops -> core
src/float8/           | float8 nn autograd ops core                              | float8 sits beside nn, above it
src/dist/nccl_process_group. | dist core kernels                                 | the NCCL process group drives kernels/nccl_comm (compiled only with nvcc; registers itself)
src/dist/             | dist nn autograd ops core                                | FSDP knows parameters and all-gather extensions, not float8
src/optim/            | optim autograd ops core                                  | the optimizer knows parameters and ops, not modules or models
src/checkpoint/       | checkpoint dist ops core                                 | checkpoint knows tensors, files and collectives, not the config
src/data/             | data core                                                | data knows tokens and tensors only
src/config/           | config core                                              | config <- train: nothing below train knows the config
src/models/           | models checkpoint dist nn autograd ops core              | models are built from nn; float8 is applied from outside, by its converter
src/train/            | train config data checkpoint models float8 dist optim nn autograd ops core | train is the top of src/; only src/ops reaches kernels/
kernels/              | kernels core                                             | kernels/ includes nothing from src/ except core headers
'
LAYERS="core ops autograd nn float8 dist optim checkpoint data config models train kernels apps tests"

fail=0
violation() { echo "FAIL: $1"; fail=$((fail + 1)); }

# One awk pass over every source file: find its row, check each quoted include against it.
files=$(cd "$root" && find src kernels -type f \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.cu' \
                                             -o -name '*.cuh' -o -name '*.def' -o -name '*.inc' \) | sort)
checked=$(wc -w <<<"$files")
[ "$checked" -gt 20 ] || violation "only $checked source files found under $root/src and $root/kernels: wrong SOURCE_DIR?"
while IFS= read -r msg; do
  [ -n "$msg" ] && violation "$msg"
done < <(cd "$root" && awk -v rules="$RULES" -v layers="$LAYERS" '
  BEGIN {
    n = split(rules, rows, "\n")
    for (i = 1; i <= n; i++) {
      if (split(rows[i], col, "|") != 3) continue
      p = col[1]; gsub(/[ \t]/, "", p)
      a = col[2]; gsub(/^[ \t]+|[ \t]+$/, "", a); gsub(/[ \t]+/, " ", a)
      w = col[3]; gsub(/^[ \t]+|[ \t]+$/, "", w)
      k++; prefix[k] = p; allowed[k] = " " a " "; why[k] = w
    }
    split(layers, L, " "); for (i in L) is_layer[L[i]] = 1
    for (f = 1; f < ARGC; f++) {  # here, not per line, so an empty file is covered too
      b = 0; blen = 0
      for (i = 1; i <= k; i++)
        if (index(ARGV[f], prefix[i]) == 1 && length(prefix[i]) > blen) { b = i; blen = length(prefix[i]) }
      row_of[ARGV[f]] = b
      if (!b) print ARGV[f] ": no layering rule covers this file (add a row to RULES in tests/cli/check_layering.sh)"
    }
  }
  FNR == 1 { best = row_of[FILENAME] }
  best && /^[ \t]*#[ \t]*include[ \t]*"/ {
    inc = $0; sub(/^[^"]*"/, "", inc); sub(/".*$/, "", inc)
    if (inc ~ /^\.\.?\//) { print FILENAME ":" FNR ": #include \"" inc "\": include by layer path (\"core/x.hpp\"), not a relative one"; next }
    if (index(inc, "/") == 0) next
    layer = inc; sub(/\/.*$/, "", layer)
    if (!(layer in is_layer)) next
    if (index(allowed[best], " " layer " ") == 0) {
      dir = prefix[best]; sub(/\/$/, "", dir)
      print FILENAME ":" FNR ": #include \"" inc "\": " dir " may include only" allowed[best] "(" why[best] ")"
    }
  }' $files)

# Rule 2: where TITAN_WITH_CUDA may appear (prefixes under src/).
CUDA_MACRO_ALLOWED="src/ops/ src/CMakeLists.txt"
# Rule 3: the one file that may read the environment, and the variables it may read (launchers'
# rank / size / local-rank variables: OpenMPI, PMIx, PMI, MPICH/Hydra, Slurm).
GETENV_FILE="src/dist/world.cpp"
GETENV_VARS='^(OMPI_COMM_WORLD_[A-Z_]+|PMIX_[A-Z_]+|PMI_[A-Z_]+|MPI_LOCALRANKID|MPI_LOCALNRANKS|SLURM_[A-Z_]+)$'

# Rule 2
while IFS=: read -r path line _; do
  rel=${path#"$root"/}
  ok=0
  for p in $CUDA_MACRO_ALLOWED; do [[ $rel == "$p"* ]] && ok=1; done
  [ $ok -eq 1 ] || violation "$rel:$line: TITAN_WITH_CUDA outside the op dispatch (src/ops/): a CPU/CUDA choice belongs in the op API or a registered DeviceBackend (DESIGN.md section 3)"
done < <(grep -rn TITAN_WITH_CUDA "$root/src")

# Rule 3
while IFS=: read -r path line text; do
  rel=${path#"$root"/}
  if [ "$rel" != "$GETENV_FILE" ]; then
    violation "$rel:$line: getenv outside $GETENV_FILE: configuration comes from the config, not the environment (DESIGN.md section 3)"
    continue
  fi
  calls=$(grep -oE 'getenv[[:space:]]*\([^)]*\)' <<<"$text")
  [ -n "$calls" ] || { violation "$rel:$line: getenv not called with a literal variable name"; continue; }
  while read -r call; do
    var=$(sed -nE 's/getenv[[:space:]]*\([[:space:]]*"([^"]*)"[[:space:]]*\)/\1/p' <<<"$call")
    if [ -z "$var" ] || ! [[ $var =~ $GETENV_VARS ]]; then
      violation "$rel:$line: $call: only the launcher's rank variables may be read from the environment"
    fi
  done <<<"$calls"
done < <(grep -rn getenv "$root/src" "$root/kernels")

if [ $fail -gt 0 ]; then
  echo "$fail layering violation(s) in $root (rules: DESIGN.md sections 1 and 3; table: tests/cli/check_layering.sh)"
  exit 1
fi
echo "ok: $checked files in src/ and kernels/ follow the layering; TITAN_WITH_CUDA only in src/ops; getenv only for rank variables"
