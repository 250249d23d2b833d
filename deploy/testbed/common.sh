# Settings and helpers shared by the test bed's scripts (sourced, not run).
#
# Every name the test bed creates on this machine is derived here, so that up.sh
# creates exactly what down.sh removes. Overridable through the environment:
#   KALE_TESTBED_ROOT   folder for configuration, state, logs and scratch
#   KALE_TESTBED_NET    first three octets of the private /24 (default 10.251.0)
#   KALE_TESTBED_NODES  number of compute nodes (default 3: node1..node3)

TB_ROOT=${KALE_TESTBED_ROOT:-/var/tmp/kale-testbed}
TB_NET=${KALE_TESTBED_NET:-10.251.0}
TB_NNODES=${KALE_TESTBED_NODES:-3}
TB_LOGIN_ADDR=$TB_NET.1
TB_BRIDGE=kaletb0
TB_CTLD_PORT=6827
TB_SLURMD_PORT=6828
TB_DBD_PORT=6829    # slurmdbd, on loopback
TB_DB_PORT=6830     # its MariaDB, on loopback
TB_GPUS=4
TB_CPUS=8
TB_MEM=8000
TB_LOGIN_HOST=$(hostname)
TB_CONF=$TB_ROOT/etc/slurm.conf
TB_SCRATCH=$TB_ROOT/scratch
TB_LOCAL=/local
TB_LOCK=/run/lock/kale-testbed.lock
# Daemons run through these links so that their process names (tb-slurmctld, tb-slurmd,
# what pgrep -x matches) differ from the development Slurm's: its scripts find and stop
# daemons by name. Their argv[0] stays slurmctld/slurmd (see up.sh).
TB_BIN=$TB_ROOT/bin

tb_nodes() {
    local i
    for i in $(seq 1 "$TB_NNODES"); do echo "node$i"; done
}

tb_node_addr() {  # node1 -> 10.251.0.11
    echo "$TB_NET.$((10 + ${1#node}))"
}

tb_veth() {  # host side of a node's veth pair
    echo "ktb-$1"
}

tb_log() {
    echo "testbed: $*"
}

tb_die() {
    echo "testbed: $*" >&2
    exit 1
}

# The pid in a pid file if that process still runs the expected program, else nothing.
tb_pid_of() {
    local file=$1 comm=$2 pid
    [ -s "$file" ] || return 1
    pid=$(cat "$file" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1
    echo "$pid"
}

tb_ctld_pid() {
    tb_pid_of "$TB_ROOT/run/slurmctld.pid" tb-slurmctld
}

# A node's slurmd, as a pid of this host. Its pid file holds its pid inside the node's
# process namespace; the NSpid line of /proc/PID/status maps one to the other.
tb_slurmd_pid() {
    local ns_pid pid
    ns_pid=$(cat "$TB_ROOT/run/slurmd-$1.pid" 2>/dev/null) || return 1
    [ -e "/run/netns/$1" ] || return 1
    for pid in $(ip netns pids "$1" 2>/dev/null); do
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = tb-slurmd ] \
                && [ "$(awk '/^NSpid:/ {print $NF}' "/proc/$pid/status" 2>/dev/null)" = "$ns_pid" ]; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}

# Whether process $2 lives in network namespace $1 (compares namespace inodes).
tb_in_netns() {
    [ -e "/run/netns/$1" ] || return 1
    [ "$(stat -L -c %i "/run/netns/$1" 2>/dev/null)" = "$(stat -L -c %i "/proc/$2/ns/net" 2>/dev/null)" ]
}

# Whether the whole test bed runs: bridge, controller, every node's slurmd inside its own
# namespace, and every node answering the controller.
tb_healthy() {
    local node pid
    ip -4 addr show dev "$TB_BRIDGE" 2>/dev/null | grep -q "inet $TB_LOGIN_ADDR/" || return 1
    tb_ctld_pid >/dev/null || return 1
    for node in $(tb_nodes); do
        pid=$(tb_slurmd_pid "$node") || return 1
        tb_in_netns "$node" "$pid" || return 1
    done
    tb_slurm scontrol ping 2>/dev/null | grep -q UP || return 1
    tb_slurm sacctmgr -n show cluster >/dev/null 2>&1 || return 1
    # Every node is listed and none is down, drained, failed, unknown or not responding
    # ("*"); busy states (alloc, mix, comp, ...) are healthy.
    local states
    states=$(tb_slurm sinfo -h -N -o '%N %t' 2>/dev/null | sort -u) || return 1
    [ "$(echo "$states" | awk '{print $1}' | sort -u | grep -c .)" = "$TB_NNODES" ] || return 1
    ! echo "$states" | grep -qE ' .*(down|drain|drng|fail|unk|[*~#!%])'
}

tb_slurm() {  # run a Slurm client against the test bed's controller
    SLURM_CONF=$TB_CONF "$@"
}
