#!/usr/bin/env bash
# Runs run_train on every bad input kept in tests/bad_inputs/ and checks that each one ends with
# one clear `error:` line and a usage/runtime exit code: never "internal error", a library's
# exception text, a crash, an abort or a hang.
#   config/*.toml       a config file (--job.config_file)
#   cli/*.args          a command line, one argument per line
#   tokenizers/*.json   a tokenizer.json; *.model a tiktoken file; *.tokens a token file (dataset)
# Usage: check_bad_inputs.sh RUN_TRAIN DEBUG_TOML TOKENIZER_DIR CORPUS_DIR
set -uo pipefail
run_train=$1 debug_toml=$2 tokenizer_dir=$3 corpus=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# What must never reach the user: our own catch-all, C++ runtime and library exception texts.
forbidden='internal error|terminate called|what\(\)|nlohmann|\[json\.exception|basic_string|std::|stoll|stoi|bad_alloc|Segmentation|Aborted|core dumped|AddressSanitizer|Assertion'
short=(--training.steps 1 --training.seq_len 32 --training.local_batch_size 2 --metrics.log_freq 1)
checked=0 failures=0

check() {  # check NAME COMMAND...: runs it, judges its exit code and output
  local name=$1; shift
  local out rc
  out=$(cd "$work" && timeout 120 "$@" 2>&1); rc=$?
  checked=$((checked + 1))
  local why=""
  if [ "$rc" -eq 0 ]; then why="exit 0 (accepted a bad input)"
  elif [ "$rc" -eq 124 ]; then why="hung (killed after 120 s)"
  elif [ "$rc" -ge 128 ]; then why="killed by signal $((rc - 128))"
  elif echo "$out" | grep -Eq "$forbidden"; then why="forbidden text: $(echo "$out" | grep -Em1 "$forbidden" | cut -c1-200)"
  elif [ "$(echo "$out" | grep -c '^error: ')" -ne 1 ]; then why="expected exactly one 'error:' line"
  fi
  if [ -n "$why" ]; then
    failures=$((failures + 1))
    echo "FAIL $name: $why"
    echo "$out" | tail -5 | sed 's/^/    /'
  else
    echo "ok   $name (exit $rc): $(echo "$out" | grep '^error: ' | cut -c1-160)"
  fi
}

for f in "$corpus"/config/*.toml; do
  [ -e "$f" ] || continue
  check "config/$(basename "$f")" "$run_train" --job.config_file "$f" --job.dump_folder "$work/out" \
    --model.hf_assets_path "$tokenizer_dir"
done
for f in "$corpus"/cli/*.args; do
  [ -e "$f" ] || continue
  mapfile -t args < "$f"
  check "cli/$(basename "$f")" "$run_train" "${args[@]}"
done
for f in "$corpus"/tokenizers/*; do
  [ -f "$f" ] || continue
  dir="$work/tok_$(basename "$f")"
  mkdir -p "$dir"
  case "$f" in
    *.json) cp "$f" "$dir/tokenizer.json"
            check "tokenizers/$(basename "$f")" "$run_train" --job.config_file "$debug_toml" "${short[@]}" \
              --job.dump_folder "$work/out" --model.tokenizer auto --model.hf_assets_path "$dir" ;;
    *.model) cp "$f" "$dir/tokenizer.model"
            check "tokenizers/$(basename "$f")" "$run_train" --job.config_file "$debug_toml" "${short[@]}" \
              --job.dump_folder "$work/out" --model.tokenizer auto --model.hf_assets_path "$dir" ;;
    *.tokens) check "tokenizers/$(basename "$f")" "$run_train" --job.config_file "$debug_toml" "${short[@]}" \
              --job.dump_folder "$work/out" --model.hf_assets_path "$tokenizer_dir" --training.dataset_path "$f" ;;
  esac
done
echo "$checked bad inputs checked, $failures failed"
[ "$checked" -gt 0 ] && [ "$failures" -eq 0 ]
