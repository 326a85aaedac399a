#!/usr/bin/env bash
# Two nodes, simulated: two network namespaces ("hosts" 10.199.0.1 and 10.199.0.2) joined by a
# veth pair, mpirun started on host 1 with a hostfile naming both, 2 slots each; OpenMPI reaches
# host 2 through a launch agent (what ssh is between real nodes) that enters host 2's network
# namespace with its own hostname and its own /dev/shm, so OpenMPI's shared-memory segments of the
# two hosts stay apart; ranks of one host use shared memory (vader), ranks of different hosts TCP
# over the veth (IPv4 only: the veth's link-local IPv6 addresses are not routable).
#   1. placement: ranks 0,1 run on host 1 and ranks 2,3 on host 2 (each reads its namespace's address);
#   2. HSDP 2 x 2 (replicate across the hosts, shard inside a host) trains 4 steps (f32 gathers) and
#      matches one process's losses and gradient norms within 1e-5 (tests/cli/compare_losses.sh).
# Needs root (or CAP_NET_ADMIN) for `ip netns` and `unshare`; without it the test reports itself skipped (77).
# usage: check_multinode.sh MPIRUN RUN_TRAIN COMPARE CONFIG [EXTRA ARGS...]
set -eu
mpirun_bin=$1; run_train=$2; compare=$3; config=$4; shift 4
command -v ip >/dev/null || { echo "SKIP: no ip (iproute2)"; exit 77; }
id=$$
h1=titan_h1_$id; h2=titan_h2_$id; v1=tv1_$id; v2=tv2_$id
dir=$(mktemp -d)
cleanup() { ip netns del "$h1" 2>/dev/null || true; ip netns del "$h2" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
if ! ip netns add "$h1" 2>"$dir/err"; then echo "SKIP: cannot make network namespaces: $(cat "$dir/err")"; exit 77; fi
ip netns add "$h2"
if ! ip netns exec "$h2" unshare --uts --mount true 2>"$dir/err"; then echo "SKIP: cannot unshare in a namespace: $(cat "$dir/err")"; exit 77; fi
if ! ip link add "$v1" type veth peer name "$v2" 2>"$dir/err"; then echo "SKIP: cannot make a veth pair: $(cat "$dir/err")"; exit 77; fi
ip link set "$v1" netns "$h1"
ip link set "$v2" netns "$h2"
ip -n "$h1" addr add 10.199.0.1/24 dev "$v1"
ip -n "$h2" addr add 10.199.0.2/24 dev "$v2"
for ns in "$h1" "$h2"; do ip -n "$ns" link set lo up; done
ip -n "$h1" link set "$v1" up
ip -n "$h2" link set "$v2" up
# The launch agent: OpenMPI runs "AGENT HOST COMMAND..." to start its daemon on a remote host.
cat > "$dir/agent" <<AGENT
#!/bin/sh
host=\$1; shift
case "\$host" in
  10.199.0.1) ns=$h1 ;;
  10.199.0.2) ns=$h2 ;;
  *) echo "agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" unshare --uts --mount --propagation private \
  sh -c "mount -t tmpfs tmpfs /dev/shm && hostname titan-\$host && \$*"
AGENT
chmod +x "$dir/agent"
printf '10.199.0.1 slots=2\n10.199.0.2 slots=2\n' > "$dir/hostfile"
launch="ip netns exec $h1 $mpirun_bin --hostfile $dir/hostfile -np 4 --allow-run-as-root
        --mca plm_rsh_agent $dir/agent --mca pml ob1 --mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none
        --mca btl_tcp_if_include 10.199.0.0/24 --mca oob_tcp_if_include 10.199.0.0/24 --mca btl_tcp_disable_family 6
        -x OPENBLAS_NUM_THREADS=1"
# 1. Placement: each rank prints the address of the namespace it runs in.
# shellcheck disable=SC2086
placement=$($launch sh -c 'echo "$OMPI_COMM_WORLD_RANK $(ip -o -4 addr show | grep -o "10\.199\.0\.[12]")"' 2>"$dir/probe.err" | sort | tr '\n' ' ') ||
  { echo "FAIL: mpirun over the two namespaces failed"; cat "$dir/probe.err"; exit 1; }
[ "$placement" = "0 10.199.0.1 1 10.199.0.1 2 10.199.0.2 3 10.199.0.2 " ] ||
  { echo "FAIL: placement is [$placement], expected ranks 0,1 on 10.199.0.1 and 2,3 on 10.199.0.2"; cat "$dir/probe.err"; exit 1; }
echo "placement: $placement"
# 2. HSDP across the hosts against one process.
COMPARE_B_LAUNCHER=$(echo $launch) "$compare" close 1e-5 "$run_train" --job.config_file "$config" \
  --training.device cpu --training.seq_len 32 --training.local_batch_size 1 --training.global_batch_size 4 \
  --training.steps 4 --metrics.log_freq 1 --activation_checkpoint.mode none --training.mixed_precision_param float32 "$@" \
  --a --b --parallelism.data_parallel_replicate_degree 2 --parallelism.data_parallel_shard_degree 2
echo "ok: 2 hosts x 2 ranks, HSDP over TCP between the hosts, matches one process"
