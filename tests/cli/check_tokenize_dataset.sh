#!/usr/bin/env bash
# tokenize_dataset never touches its input and fails with one line (issue 19):
#  - an --output that names the input (same spelling, ./ or ../ spellings, a symlink, a file of an
#    input folder) refuses with exit 2 and leaves the input byte for byte as it was;
#  - an input that is already tokenized (.tokens) is exit 2, not "0 tokens";
#  - usage errors are exit 2 with one "error:" line (CLI11's own codes were 105/106);
#  - every bad tokenizer of tests/bad_inputs/tokenizers (hf_*.json, tiktoken_*.model, folders/) is exit 2 or 3 with one
#    "error:" line holding the case's expected text, never an abort or library text.
# usage: check_tokenize_dataset.sh TOKENIZE_DATASET TOKENIZER_DIR BAD_INPUTS_DIR
set -u
tool=$(realpath "$1"); tokenizer=$(realpath "$2"); bad=$(realpath "$3")
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# run EXPECTED_RC REGEX ARGS...: exit code, one error line for a failure, no crash or library text.
run() {
  local want=$1 regex=$2; shift 2
  "$tool" "$@" >"$dir/out" 2>"$dir/err"
  local rc=$?
  local all; all=$(cat "$dir/out" "$dir/err")
  if [ "$rc" -ne "$want" ]; then fail "exit $rc (want $want): $tool $*"; echo "$all"; return; fi
  if ! grep -Eq -- "$regex" "$dir/out" "$dir/err"; then fail "no /$regex/ in the output of: $tool $*"; echo "$all"; return; fi
  if [ "$rc" -ne 0 ]; then
    local n; n=$(grep -c '^error: ' "$dir/err")
    [ "$n" -eq 1 ] || { fail "$n error lines (want 1): $tool $*"; echo "$all"; }
  fi
  if grep -Eq 'internal error|terminate called|Aborted|Segmentation|what\(\)|json\.exception|basic_string|std::' "$dir/err"; then
    fail "crash or library text: $tool $*"; echo "$all"
  fi
}

mkdir -p "$dir/data/sub"
printf '{"text": "the first document"}\n{"text": "the second one"}\n' >"$dir/data/c.jsonl"
printf 'a plain text document\n' >"$dir/data/sub/d.txt"
cp "$dir/data/c.jsonl" "$dir/c.orig"; cp "$dir/data/sub/d.txt" "$dir/d.orig"
ln -s "$dir/data/c.jsonl" "$dir/link.jsonl"
T=(--hf_assets_path "$tokenizer")

# --output names the input: refused before anything is read or written.
same="--output .* is the input file .*choose another --output"
run 2 "$same" --input "$dir/data/c.jsonl" --output "$dir/data/c.jsonl" "${T[@]}"
run 2 "$same" --input "$dir/data/c.jsonl" --output "$dir/data/./c.jsonl" "${T[@]}"
run 2 "$same" --input "$dir/data/c.jsonl" --output "$dir/data/sub/../c.jsonl" "${T[@]}"
run 2 "$same" --input "$dir/link.jsonl" --output "$dir/data/c.jsonl" "${T[@]}"
run 2 "$same" --input "$dir/data/c.jsonl" --output "$dir/link.jsonl" "${T[@]}"
run 2 "$same" --input "$dir/data" --output "$dir/data/sub/d.txt" "${T[@]}"
run 2 "$same" --input "$dir/data/" --output "$dir/data//c.jsonl" "${T[@]}"
(cd "$dir/data" && run 2 "$same" --input c.jsonl --output "$dir/data/c.jsonl" "${T[@]}")
cmp -s "$dir/data/c.jsonl" "$dir/c.orig" || fail "the input c.jsonl changed"
cmp -s "$dir/data/sub/d.txt" "$dir/d.orig" || fail "the input d.txt changed"
[ -L "$dir/link.jsonl" ] || fail "the symlink input was replaced"
leftover=$(find "$dir/data" -name '*.tmp*' | head -1)
[ -z "$leftover" ] || fail "a temporary file was left in the input folder: $leftover"

# An input that is already tokenized.
run 0 "wrote .*/t.tokens: [0-9]+ tokens from 1 files" --input "$dir/data/c.jsonl" --output "$dir/t.tokens" "${T[@]}"
run 2 "is already tokenized .*train from it directly with training.dataset_path" --input "$dir/t.tokens" --output "$dir/u.tokens" "${T[@]}"
mkdir -p "$dir/tok_only"; cp "$dir/t.tokens" "$dir/tok_only/"
run 2 "is already tokenized" --input "$dir/tok_only" --output "$dir/u.tokens" "${T[@]}"
[ ! -e "$dir/u.tokens" ] || fail "an output was written for an already tokenized input"
cp "$dir/t.tokens" "$dir/data/"
run 0 "skipping 1 .tokens file" --input "$dir/data" --output "$dir/v.tokens" "${T[@]}"
rm "$dir/data/t.tokens"

# Usage errors: exit 2, one line.
run 2 "--input is required" --output "$dir/x.tokens"
run 2 "--output is required" --input "$dir/data/c.jsonl"
run 2 "not expected|unknown|extra" --input "$dir/data/c.jsonl" --output "$dir/x.tokens" --bogus 1
run 2 "tokenizer" --input "$dir/data/c.jsonl" --output "$dir/x.tokens" --tokenizer sentencepiece
run 2 "output" --input "$dir/data/c.jsonl" --output
run 2 "is a folder; name the .tokens file" --input "$dir/data/c.jsonl" --output "$dir/data" "${T[@]}"
run 2 "does not exist" --input "$dir/nope.jsonl" --output "$dir/x.tokens" "${T[@]}"
run 2 "cannot write token file" --input "$dir/data/c.jsonl" --output "$dir/no/such/folder/x.tokens" "${T[@]}"
run 0 "Pre-tokenize" --help

# Every bad tokenizer file: one clear line (hf_*.json, tiktoken_*.model, folders/<case>/).
n=0
for case in "$bad"/hf_*.json "$bad"/tiktoken_*.model "$bad"/folders/*; do
  [ -e "$case" ] || continue
  if [ -d "$case" ]; then
    assets=$case; want=$(head -n 1 "$case/expect")
  else
    assets="$dir/tok_$(basename "$case")"; mkdir -p "$assets"; want=$(head -n 1 "$case.expect")
    case "$case" in *.json) cp "$case" "$assets/tokenizer.json" ;; *) cp "$case" "$assets/tokenizer.model" ;; esac
  fi
  "$tool" --input "$dir/data/c.jsonl" --output "$dir/bad.tokens" --hf_assets_path "$assets" >"$dir/out" 2>"$dir/err"
  rc=$?
  if [ "$rc" -ne 2 ] && [ "$rc" -ne 3 ]; then fail "$(basename "$case"): exit $rc (want 2 or 3)"; cat "$dir/err"; continue; fi
  [ "$(grep -c '^error: ' "$dir/err")" -eq 1 ] && [ "$(wc -l <"$dir/err")" -eq 1 ] || { fail "$(basename "$case"): not one line"; cat "$dir/err"; }
  grep -qF -- "$want" "$dir/err" || { fail "$(basename "$case"): no '$want'"; cat "$dir/err"; }
  if grep -Eq 'internal error|terminate called|Aborted|what\(\)|json\.exception|basic_string|std::' "$dir/err"; then fail "$(basename "$case"): library text"; cat "$dir/err"; fi
  [ ! -e "$dir/bad.tokens" ] || fail "$(basename "$case"): an output was written"
  n=$((n + 1))
done
[ "$n" -ge 70 ] || fail "only $n bad tokenizer cases found under $bad"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "ok ($n bad tokenizers)"
