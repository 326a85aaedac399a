#!/usr/bin/env bash
# profiling.enable_profiling end to end on 2 ranks: TorchTitan's schedule and layout, and a valid
# Chrome trace per rank and written cycle holding every span kind.
#   profile_freq 3, warmup 1, active 2, 5 steps: steps 2-3 are written after step 3 as
#   iteration_3/, and the cycle cut short by the end of training (step 5) as iteration_5/.
#   Step 1 and 4 are wait/warm-up steps and appear nowhere. Profiling off: no trace folder.
# Each file goes through trace_check (tests/cli/trace_check.cpp): valid JSON, well-formed
# complete events inside the recorded steps, 2 forward/backward spans per step (gradient
# accumulation), spans that nest per thread, and the categories step, data, forward, backward,
# module, module_backward, attention, gemm, comm, comm_wait, optimizer and checkpoint (saves at
# steps 3 and 5). Collectives carry their bytes.
# usage: check_profiling.sh MPIRUN... -- RUN_TRAIN TRACE_CHECK CONFIG [EXTRA ARGS...]
set -eu
launcher=()
while [ "$1" != "--" ]; do launcher+=("$1"); shift; done
shift
run_train=$1; trace_check=$2; config=$3; shift 3
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
args=(--job.config_file "$config" --training.device cpu --training.seq_len 32 --training.local_batch_size 2
      --training.global_batch_size 8 --training.steps 5 --metrics.log_freq 1 --checkpoint.enable --checkpoint.interval 3
      --profiling.save_traces_folder traces --profiling.profile_freq 3 --profiling.profiler_warmup 1
      --profiling.profiler_active 2 "$@")
"${launcher[@]}" -np 2 "$run_train" "${args[@]}" --profiling.enable_profiling --profiling.enable_memory_snapshot --job.dump_folder "$dir/on" > "$dir/on.log" 2>&1 ||
  { echo "FAIL: the profiled run failed"; cat "$dir/on.log"; exit 1; }
found=$(cd "$dir/on/traces" && find . -type f | sort | tr '\n' ' ')
want="./iteration_3/rank0_trace.json ./iteration_3/rank1_trace.json ./iteration_5/rank0_trace.json ./iteration_5/rank1_trace.json "
[ "$found" = "$want" ] || { echo "FAIL: trace files are [$found], expected [$want]"; cat "$dir/on.log"; exit 1; }
grep -q "profiling: wrote .* events of step(s) 2,3 to .*iteration_3/rank0_trace.json" "$dir/on.log" ||
  { echo "FAIL: no 'profiling: wrote' line for iteration_3"; cat "$dir/on.log"; exit 1; }
cats=step,data,forward,backward,module,module_backward,attention,gemm,comm,comm_wait,optimizer,checkpoint
for r in 0 1; do
  "$trace_check" "$dir/on/traces/iteration_3/rank${r}_trace.json" --rank $r --steps 2,3 --micro-batches 2 --require $cats
  "$trace_check" "$dir/on/traces/iteration_5/rank${r}_trace.json" --rank $r --steps 5 --micro-batches 2 --require $cats
done
# Module spans name each module by type and FQN (a block's span holds its children's).
grep -q '"name":"TransformerBlock layers.5"' "$dir/on/traces/iteration_3/rank0_trace.json" &&
  grep -q '"name":"Linear layers.0.attention.wq"' "$dir/on/traces/iteration_3/rank0_trace.json" ||
  { echo "FAIL: module spans do not name TransformerBlock layers.5 and Linear layers.0.attention.wq"; exit 1; }
grep -q '"cat":"module_backward","name":"TransformerBlock layers.5"' "$dir/on/traces/iteration_3/rank0_trace.json" ||
  { echo "FAIL: no backward span for TransformerBlock layers.5"; exit 1; }
grep -Eq '"cat":"comm","name":"all_gather",[^}]*"args":\{"bytes":[1-9][0-9]*\}' "$dir/on/traces/iteration_3/rank0_trace.json" ||
  { echo "FAIL: all_gather spans do not carry args.bytes"; exit 1; }
# Memory snapshots (profiling.enable_memory_snapshot): after steps 3 and 5 (the last), per rank,
# listing the per-step peaks since the previous one and a non-empty set of live blocks.
found=$(cd "$dir/on/memory_snapshot" && find . -type f | sort | tr '\n' ' ')
want="./iteration_3/rank0_memory_snapshot.json ./iteration_3/rank1_memory_snapshot.json ./iteration_5/rank0_memory_snapshot.json ./iteration_5/rank1_memory_snapshot.json "
[ "$found" = "$want" ] || { echo "FAIL: memory snapshots are [$found], expected [$want]"; cat "$dir/on.log"; exit 1; }
snap=$(tr -d ' \n' < "$dir/on/memory_snapshot/iteration_3/rank1_memory_snapshot.json")
for want in '"rank":1' '"iteration":3' '"steps":[{"peak_bytes":' '"step":1}' '"step":2}' '"step":3}' '"allocated_at_step":0'; do
  case "$snap" in *"$want"*) ;; *) echo "FAIL: iteration_3/rank1_memory_snapshot.json lacks $want"; exit 1 ;; esac
done
case "$snap" in *'"live_bytes":0,'*|*'"live_blocks":0,'*) echo "FAIL: the memory snapshot lists no live blocks"; exit 1 ;; esac
"${launcher[@]}" -np 1 "$run_train" "${args[@]}" --training.global_batch_size 4 --job.dump_folder "$dir/off" > "$dir/off.log" 2>&1 ||
  { echo "FAIL: the run without profiling failed"; cat "$dir/off.log"; exit 1; }
[ ! -e "$dir/off/traces" ] && [ ! -e "$dir/off/memory_snapshot" ] ||
  { echo "FAIL: profiling off still wrote $dir/off/traces or $dir/off/memory_snapshot"; exit 1; }
echo "ok: traces for exactly steps 2-3 (iteration_3) and 5 (iteration_5) on both ranks, every span kind; memory snapshots after steps 3 and 5"
