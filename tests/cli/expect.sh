#!/usr/bin/env bash
# CLI end-to-end check: run a command, then assert its exit code, that its output matches a
# regex, and (for usage errors, exit 2) that stderr is one error line with no trace or abort.
# usage: expect.sh EXPECTED_RC REGEX -- COMMAND [ARGS...]
# EXPECTED_RC may be "nonzero".
set -u
want_rc=$1; regex=$2; shift 2
[ "$1" = "--" ] && shift
out=$(mktemp); err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
"$@" >"$out" 2>"$err"
rc=$?
fail() { echo "FAIL: $*"; echo "--- command: $*"; echo "--- stdout:"; cat "$out"; echo "--- stderr:"; cat "$err"; exit 1; }
if [ "$want_rc" = "nonzero" ]; then
  [ "$rc" -ne 0 ] || fail "exit code $rc, expected non-zero"
else
  [ "$rc" -eq "$want_rc" ] || fail "exit code $rc, expected $want_rc"
fi
grep -Eq -- "$regex" "$out" "$err" || fail "output does not match /$regex/"
if [ "$rc" -eq 2 ]; then
  n=$(grep -c '^error: ' "$err")
  [ "$n" -eq 1 ] || fail "expected exactly one 'error:' line on stderr, got $n"
  if grep -Eq 'terminate called|Aborted|Segmentation|what\(\)' "$err"; then fail "crash text on stderr"; fi
fi
echo "ok (exit $rc)"
