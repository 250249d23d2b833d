#!/usr/bin/env bash
# Whether the test bed of up.sh runs (exit 0) or not (exit 1); with it up, show its
# nodes, partitions and jobs.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

if ! tb_healthy; then
    tb_log "down (or partly up: run up.sh to rebuild it)"
    exit 1
fi
tb_log "up; login node $TB_LOGIN_ADDR, SLURM_CONF=$TB_CONF, scratch $TB_SCRATCH"
for node in $(tb_nodes); do
    echo "  $node $(tb_node_addr "$node") slurmd pid $(tb_slurmd_pid "$node")"
done
tb_slurm sinfo -o '%P %a %l %D %t %N %G'
tb_slurm squeue
