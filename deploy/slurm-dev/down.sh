#!/usr/bin/env bash
# Stop the development Slurm of up.sh: cancel every job, stop the daemons.
set -uo pipefail
command -v scancel >/dev/null && scancel --user="$(id -un)" 2>/dev/null
pkill -x slurmd 2>/dev/null
pkill -x slurmctld 2>/dev/null
for _ in $(seq 1 20); do
    pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || { echo "slurm-dev: down"; exit 0; }
    sleep 0.5
done
echo "slurm-dev: daemons still running" >&2
exit 1
