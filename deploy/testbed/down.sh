#!/usr/bin/env bash
# Remove the test bed of up.sh: every process inside the node namespaces (slurmd, job
# steps, whatever jobs started), the test bed's slurmctld, the namespaces, veths and
# bridge, and its folder (logs are kept). Idempotent; leaves the development Slurm alone.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

[ "$(id -u)" = 0 ] || tb_die "needs root; run it as root"

if [ -z "${KALE_TESTBED_LOCKED:-}" ]; then
    mkdir -p "$(dirname "$TB_LOCK")"
    exec 9>"$TB_LOCK"
    flock -w 120 9 || tb_die "another up/down of the test bed holds $TB_LOCK for over 120 s"
fi

# Send TERM to the given pids, then KILL to those alive after $1 tenths of a second.
stop_pids() {
    local tenths=$1 pid alive
    shift
    local pids=("$@")
    [ ${#pids[@]} -gt 0 ] || return 0
    kill -TERM "${pids[@]}" 2>/dev/null
    for _ in $(seq 1 "$tenths"); do
        alive=()
        for pid in "${pids[@]}"; do
            # A zombie has ended; only its parent's wait is missing.
            if [ -e "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
                alive+=("$pid")
            fi
        done
        [ ${#alive[@]} -gt 0 ] || return 0
        sleep 0.1
    done
    kill -KILL "${alive[@]}" 2>/dev/null
}

nodes=$(tb_nodes)
[ -s "$TB_ROOT/run/nodes" ] && nodes=$(sort -u <(echo "$nodes") "$TB_ROOT/run/nodes")

# Everything in a node's network namespace: its slurmd, slurmstepd and job processes.
for node in $nodes; do
    [ -e "/run/netns/$node" ] || continue
    mapfile -t pids < <(ip netns pids "$node" 2>/dev/null)
    stop_pids 50 "${pids[@]}"
done
# The controller and its helper (slurmscriptd), given a second: with nodes gone it can
# spend seconds on messages to them, and its state is deleted below anyway. Then any
# daemon of the test bed left over from a namespace that was removed under it.
if pid=$(tb_ctld_pid); then
    mapfile -t pids < <(echo "$pid"; pgrep -P "$pid")
    stop_pids 10 "${pids[@]}"
fi
mapfile -t pids < <(pgrep -x tb-slurmctld; pgrep -x tb-slurmd)
stop_pids 10 "${pids[@]}"
bash "$here/accounting.sh" stop
mapfile -t pids < <(pgrep -x tb-slurmdbd)
stop_pids 10 "${pids[@]}"

for node in $nodes; do
    [ -e "/run/netns/$node" ] && ip netns del "$node"
    # Removing a namespace removes its veth pair, a moment later.
    ip link del "$(tb_veth "$node")" 2>/dev/null
done
ip link show "$TB_BRIDGE" >/dev/null 2>&1 && ip link del "$TB_BRIDGE"
# iproute2 bind-mounts /run/netns onto itself for its first namespace; undo that once
# no namespace is left in it.
if mountpoint -q /run/netns && [ -z "$(ls -A /run/netns)" ]; then
    umount /run/netns && rmdir /run/netns
fi

if [ -e "$TB_ROOT/run/made-local" ]; then
    rmdir "$TB_LOCAL" 2>/dev/null
fi
if [ -d "$TB_ROOT" ]; then
    find "$TB_ROOT" -mindepth 1 -maxdepth 1 ! -name log -exec rm -rf {} +
fi
tb_log "down"
