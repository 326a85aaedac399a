# Sourced by the multi-rank check scripts: parses "LAUNCHER... -- RUN_TRAIN CONFIG [EXTRA...]" into
# `launcher` (array), `run_train`, `config` and leaves EXTRA in "$@"; makes a scratch `dir`, and
# defines `field RUN NAME`: the values of NAME in $dir/RUN/metrics.jsonl, one per line.
launcher=()
while [ "$1" != "--" ]; do launcher+=("$1"); shift; done
shift
run_train=$1; config=$2; shift 2
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
field() { grep -o "\"$2\":[0-9.e+-]*" "$dir/$1/metrics.jsonl" | cut -d: -f2; }
