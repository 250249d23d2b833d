#!/usr/bin/env bash
# Run a command on a test-bed node outside Slurm, in that node's network, mount, UTS and
# process namespaces (those of its slurmd): bash deploy/testbed/on-node.sh node2 ip -4 addr
# For looking around; jobs go through srun/sbatch.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

[ $# -ge 2 ] || tb_die "usage: on-node.sh NODE COMMAND [ARG...] (nodes: $(tb_nodes | paste -sd' ' -))"
node=$1
shift
pid=$(tb_slurmd_pid "$node") || tb_die "no slurmd runs for $node; start the test bed with up.sh"
exec nsenter --target "$pid" --net --mount --uts --pid -- "$@"
