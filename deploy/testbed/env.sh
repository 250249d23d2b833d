#!/usr/bin/env bash
# Print the environment that points Slurm clients (and kale) at the test bed:
#   eval "$(bash deploy/testbed/env.sh)"
# One NAME=value assignment a line, shell-quoted, each exported.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

printf 'export SLURM_CONF=%q\n' "$TB_CONF"
printf 'export SCRATCH=%q\n' "$TB_SCRATCH"
printf 'export KALE_TESTBED_ROOT=%q\n' "$TB_ROOT"
printf 'export KALE_TESTBED_LOGIN_ADDR=%q\n' "$TB_LOGIN_ADDR"
printf 'export KALE_TESTBED_NODES=%q\n' "$TB_NNODES"
printf 'export KALE_TESTBED_NODE_ADDRS=%q\n' "$(for n in $(tb_nodes); do printf '%s=%s ' "$n" "$(tb_node_addr "$n")"; done | sed 's/ $//')"
printf 'export KALE_TESTBED_LOCAL=%q\n' "$TB_LOCAL"
