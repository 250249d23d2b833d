#!/usr/bin/env bash
# The test bed's accounting: a MariaDB of its own and slurmdbd, so that associations and
# QOS limits are enforced as at a centre (sacct, sacctmgr, QOSMaxWallDurationPerJobLimit).
#
#   bash accounting.sh start   start both (the database is made on first use), register
#                              the cluster, the account "kale", the users and the QOS
#   bash accounting.sh stop    stop both
#
# Run by up.sh before the controller starts and by down.sh; needs root. Users with an
# association: root and $KALE_TESTBED_USERS (default "alice bob"; they need not exist yet).
# QOS: "normal" (everyone's default) and "short" (MaxWall 5 minutes, on request).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

db=$TB_ROOT/db
sock=$TB_ROOT/run/mariadb.sock
dbd_conf=$TB_ROOT/etc/slurmdbd.conf
users="root ${KALE_TESTBED_USERS:-alice bob}"

stop() {
    local pid
    for name in slurmdbd mariadb; do
        pid=$(cat "$TB_ROOT/run/$name.pid" 2>/dev/null) || continue
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -f "$TB_ROOT/run/slurmdbd.pid" "$TB_ROOT/run/mariadb.pid"
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
    local tenths=$(($1 * 10)) what=$2
    shift 2
    for _ in $(seq 1 "$tenths"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    tb_die "$what did not come up in $((tenths / 10)) s; see $TB_ROOT/log/"
}

start() {
    for cmd in mariadbd mariadb-install-db slurmdbd sacctmgr; do
        command -v "$cmd" >/dev/null || PATH=$PATH:/usr/sbin command -v "$cmd" >/dev/null \
            || tb_die "$cmd not found; install mariadb-server and slurmdbd (up.sh does)"
    done
    mkdir -p "$TB_ROOT"/{etc,run,log}
    if [ ! -d "$db/mysql" ]; then
        mariadb-install-db --no-defaults --datadir="$db" --user=root \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$TB_ROOT/log/mariadb-install.log" 2>&1 \
            || tb_die "mariadb-install-db failed; see $TB_ROOT/log/mariadb-install.log"
    fi
    # TCP on loopback only, for slurmdbd; the password is made here and never leaves 0600 files.
    local pass_file=$TB_ROOT/etc/dbd-password
    [ -s "$pass_file" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$pass_file")
    if ! [ -S "$sock" ] || ! mariadb --no-defaults -S "$sock" -e 'select 1' >/dev/null 2>&1; then
        (exec /usr/sbin/mariadbd --no-defaults --datadir="$db" --user=root --socket="$sock" \
            --bind-address=127.0.0.1 --port="$TB_DB_PORT" --innodb-lock-wait-timeout=900 --pid-file="$TB_ROOT/run/mariadb.pid" \
            --log-error="$TB_ROOT/log/mariadb.log" </dev/null >/dev/null 2>&1 9>&- &)
        wait_for 30 "MariaDB" mariadb --no-defaults -S "$sock" -e 'select 1'
    fi
    mariadb --no-defaults -S "$sock" -e "
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$(cat "$pass_file")';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

    (umask 077; cat > "$dbd_conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$TB_DBD_PORT
SlurmUser=root
PidFile=$TB_ROOT/run/slurmdbd.pid
LogFile=$TB_ROOT/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$TB_DB_PORT
StorageUser=slurm
StoragePass=$(cat "$pass_file")
StorageLoc=slurm_acct_db
CONF
    )
    # slurmdbd reads slurmdbd.conf from the folder of SLURM_CONF.
    if ! tb_slurm sacctmgr -n show cluster >/dev/null 2>&1; then
        (SLURM_CONF=$TB_CONF exec -a slurmdbd "$TB_BIN/tb-slurmdbd") 9>&-
        wait_for 30 "slurmdbd" tb_slurm sacctmgr -n show cluster
    fi

    # Associations and QOS, each only if missing (sacctmgr says "nothing new" otherwise).
    local cluster=kale-testbed
    tb_slurm sacctmgr -n -P show cluster format=cluster | grep -qx "$cluster" \
        || tb_slurm sacctmgr -i add cluster "$cluster" >/dev/null
    tb_slurm sacctmgr -n -P show qos format=name | grep -qx short \
        || tb_slurm sacctmgr -i add qos short MaxWall=00:05:00 >/dev/null
    tb_slurm sacctmgr -n -P show account format=account | grep -qx kale \
        || tb_slurm sacctmgr -i add account kale Cluster="$cluster" \
            Description="kale test bed" Organization=kale >/dev/null
    # An account with no users, for reservations no job may use (maintenance windows).
    tb_slurm sacctmgr -n -P show account format=account | grep -qx maint \
        || tb_slurm sacctmgr -i add account maint Cluster="$cluster" \
            Description="reservations no job uses" Organization=kale >/dev/null
    local user
    for user in $users; do
        tb_slurm sacctmgr -n -P show assoc where user="$user" account=kale format=user \
            | grep -qx "$user" \
            || tb_slurm sacctmgr -i add user "$user" Account=kale Cluster="$cluster" \
                DefaultAccount=kale QOS=normal,short DefaultQOS=normal >/dev/null
    done
    # root also has slurmdbd's own "root" account, which it would otherwise default to.
    tb_slurm sacctmgr -i modify user root set DefaultAccount=kale >/dev/null || true
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 64 ;;
esac
