#!/usr/bin/env bash
# Show whether the development Slurm of up.sh is running, its node and its jobs.
set -uo pipefail
if scontrol ping 2>/dev/null | grep -q UP; then
    sinfo
    squeue
else
    echo "slurm-dev: down"
    exit 1
fi
