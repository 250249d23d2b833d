#!/usr/bin/env bash
# Start the multi-node test bed (see README.md): a bridge to this host (the login node),
# node1..nodeN as network + mount + UTS namespaces each running its own slurmd, and a
# second slurmctld of their own, reached by clients through SLURM_CONF.
# Idempotent: a healthy test bed is left as it is; a partial one is removed and rebuilt.
# Needs root. The development Slurm's installation and munge key are reused.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

[ "$(id -u)" = 0 ] || tb_die "needs root (network namespaces, mknod, slurmd); run it as root"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v munged >/dev/null || [ ! -s /etc/munge/munge.key ]; then
    tb_log "Slurm or munge missing: installing them with deploy/slurm-dev/up.sh"
    bash "$here/../slurm-dev/up.sh"
fi
if ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
    tb_log "slurmdbd or MariaDB missing: installing them"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmdbd mariadb-server >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -qq slurmdbd mariadb-server >/dev/null; }
fi
for cmd in ip nsenter unshare mknod flock; do
    command -v "$cmd" >/dev/null || tb_die "command $cmd not found; install iproute2/util-linux"
done

mkdir -p "$(dirname "$TB_LOCK")"
exec 9>"$TB_LOCK"
flock -w 120 9 || tb_die "another up/down of the test bed holds $TB_LOCK for over 120 s"


if tb_healthy; then
    tb_log "already up (SLURM_CONF=$TB_CONF)"
    exit 0
fi

# Anything left from an earlier, partial start goes first.
KALE_TESTBED_LOCKED=1 bash "$here/down.sh" >/dev/null

# The private /24 must be free: no other interface or route may claim it.
if ip -o -4 addr show | grep -v " $TB_BRIDGE " | grep -q " inet $TB_NET\."; then
    tb_die "$TB_NET.0/24 is already used by an interface here; pick another with KALE_TESTBED_NET"
fi
if ip -4 route show | grep -v " dev $TB_BRIDGE " | grep -q "^$TB_NET\."; then
    tb_die "$TB_NET.0/24 is already routed here; pick another with KALE_TESTBED_NET"
fi

start=$(date +%s%N)
# (9>&-: a daemon must not hold this script's lock on $TB_LOCK, or the next up waits on it.)
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged 2>/dev/null 9>&- \
    || /usr/sbin/munged --force 9>&-

# --- files -----------------------------------------------------------------------------
mkdir -p "$TB_ROOT"/{etc,run,log,dev,bin,state/ctld} "$TB_SCRATCH"
chmod 1777 "$TB_SCRATCH"
rm -f "$TB_ROOT"/log/*.log
tb_nodes > "$TB_ROOT/run/nodes"  # what down.sh removes, whatever KALE_TESTBED_NODES says then
ln -sfn "$(command -v slurmctld)" "$TB_BIN/tb-slurmctld"
ln -sfn "$(command -v slurmd)" "$TB_BIN/tb-slurmd"
ln -sfn "$(command -v slurmdbd)" "$TB_BIN/tb-slurmdbd"
# Fake GPUs: character devices with NVIDIA's major number. Slurm only needs them to
# exist (AutoDetect=off); nothing opens them.
for i in $(seq 0 $((TB_GPUS - 1))); do
    mknod -m 0666 "$TB_ROOT/dev/nvidia$i" c 195 "$i"
done
# The mount point of every node's own /local; the login node keeps an empty folder.
if [ ! -e "$TB_LOCAL" ]; then
    mkdir -p "$TB_LOCAL"
    touch "$TB_ROOT/run/made-local"
fi

nodes=$(tb_nodes | paste -sd, -)
{
    echo "127.0.0.1 localhost"
    echo "::1 localhost ip6-localhost ip6-loopback"
    echo "$TB_LOGIN_ADDR $TB_LOGIN_HOST login"
    for node in $(tb_nodes); do echo "$(tb_node_addr "$node") $node"; done
} > "$TB_ROOT/etc/hosts"

cat > "$TB_ROOT/etc/task-prolog.sh" <<PROLOG
#!/bin/sh
# Runs before every task; "export" lines on stdout enter the task's environment.
echo "export SCRATCH=$TB_SCRATCH"
PROLOG
chmod 0755 "$TB_ROOT/etc/task-prolog.sh"

cat > "$TB_ROOT/etc/gres.conf" <<GRES
AutoDetect=off
Name=gpu File=$TB_ROOT/dev/nvidia[0-$((TB_GPUS - 1))]
GRES

{
cat <<CONF
ClusterName=kale-testbed
SlurmctldHost=${TB_LOGIN_HOST}($TB_LOGIN_ADDR)
SlurmUser=root
SlurmctldPort=$TB_CTLD_PORT
SlurmdPort=$TB_SLURMD_PORT
AuthType=auth/munge
StateSaveLocation=$TB_ROOT/state/ctld
SlurmdSpoolDir=$TB_ROOT/state/%n
SlurmctldPidFile=$TB_ROOT/run/slurmctld.pid
SlurmdPidFile=$TB_ROOT/run/slurmd-%n.pid
SlurmctldLogFile=$TB_ROOT/log/slurmctld.log
SlurmdLogFile=$TB_ROOT/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
TaskProlog=$TB_ROOT/etc/task-prolog.sh
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MessageTimeout=10
InactiveLimit=0
KillWait=5
MinJobAge=30
SlurmctldTimeout=30
SlurmdTimeout=30
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$TB_DBD_PORT
AccountingStorageEnforce=associations,limits,qos
CONF
for node in $(tb_nodes); do
    echo "NodeName=$node NodeHostname=$node NodeAddr=$(tb_node_addr "$node") CPUs=$TB_CPUS" \
         "RealMemory=$TB_MEM Gres=gpu:$TB_GPUS State=UNKNOWN"
done
cat <<CONF
PartitionName=regular Nodes=$nodes Default=YES DefaultTime=01:00:00 MaxTime=2-00:00:00 State=UP
PartitionName=debug Nodes=$nodes DefaultTime=00:10:00 MaxTime=00:30:00 State=UP
PartitionName=gpu Nodes=$nodes DefaultTime=01:00:00 MaxTime=12:00:00 State=UP
CONF
} > "$TB_CONF"

# --- network: a bridge on the login node, one namespace and veth pair per node ---------
ip link add "$TB_BRIDGE" type bridge
ip addr add "$TB_LOGIN_ADDR/24" dev "$TB_BRIDGE"
ip link set "$TB_BRIDGE" up
for node in $(tb_nodes); do
    veth=$(tb_veth "$node")
    ip netns add "$node"
    ip link add "$veth" type veth peer name eth0 netns "$node"
    ip link set "$veth" master "$TB_BRIDGE" up
    ip -n "$node" link set lo up
    ip -n "$node" addr add "$(tb_node_addr "$node")/24" dev eth0
    ip -n "$node" link set eth0 up
done

# --- daemons ---------------------------------------------------------------------------
# argv[0] stays slurmctld/slurmd: Slurm decides from it which daemon it runs as.
# (9>&-: daemons must not hold this script's lock on $TB_LOCK.)
bash "$here/accounting.sh" start 9>&-
(exec -a slurmctld "$TB_BIN/tb-slurmctld" -f "$TB_CONF") 9>&-
for node in $(tb_nodes); do
    mkdir -p "$TB_ROOT/state/$node" "$TB_ROOT/nodes/$node/local"
    chmod 1777 "$TB_ROOT/nodes/$node/local"
    # nsenter --net, not `ip netns exec`: the latter remounts /sys, and slurmd then finds
    # no cgroup file system. Each node also gets its own mount namespace (its /local and
    # /etc/hosts), host name and process namespace: a bash as the node's init (it reaps
    # orphans; TERM stops the node) and slurmd under it, in the foreground. The job steps
    # slurmd starts inherit all of these.
    nsenter --net="/run/netns/$node" -- \
        setsid unshare --mount --uts --pid --fork --mount-proc --propagation private -- \
        bash -euc '
            mount --bind "$1" "$2"
            mount --bind "$3" /etc/hosts
            hostname "$4"
            # On TERM, stop every process of the node and wait for them (up to 5 s): the
            # node ends when its init does, and job steps still tell srun they ended.
            trap "kill -TERM -1 2>/dev/null
                  for _ in \$(seq 50); do kill -0 -1 2>/dev/null || exit 0; sleep 0.1; done
                  exit 0" TERM
            (exec -a slurmd "$5" -D -f "$6" -N "$4") &
            wait' \
        _ "$TB_ROOT/nodes/$node/local" "$TB_LOCAL" "$TB_ROOT/etc/hosts" "$node" \
        "$TB_BIN/tb-slurmd" "$TB_CONF" </dev/null >>"$TB_ROOT/log/$node-init.log" 2>&1 9>&- &
done

for _ in $(seq 1 120); do
    if tb_healthy; then
        ms=$((($(date +%s%N) - start) / 1000000))
        tb_log "up in $((ms / 1000)).$((ms % 1000 / 100)) s:" \
               "login node $TB_LOGIN_ADDR, nodes $nodes; export SLURM_CONF=$TB_CONF"
        exit 0
    fi
    # Nodes that registered before the controller settled come back on their own
    # (ReturnToService=2); a resume only speeds that up.
    tb_slurm scontrol update nodename="$nodes" state=resume >/dev/null 2>&1 || true
    sleep 0.25
done
echo "testbed: did not become ready in 30 s; logs in $TB_ROOT/log" >&2
tb_slurm sinfo -N >&2 || true
tail -n 5 "$TB_ROOT"/log/*.log >&2 || true
exit 1
