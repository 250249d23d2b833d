"""JupyterHub on an HPC login node with batchspawner: each user's server runs as a Slurm
job, with kale_ext's server extension (enabled on install) and sidebar.

Copy beside your hub's configuration and adjust partition, account and walltime.
Requires `pip install jupyterhub batchspawner kale-ext[widgets]` in the hub's
environment and kale-ext in the users' (or the container of deploy/container).
"""

# ruff: noqa: F821 - `c` is JupyterHub's configuration object
import batchspawner  # noqa: F401 - registers the spawners

c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
c.Spawner.default_url = "/lab"
c.Spawner.http_timeout = 300  # a queued job may take a while to start
c.BatchSpawnerBase.req_partition = "interactive"
c.BatchSpawnerBase.req_runtime = "04:00:00"
c.BatchSpawnerBase.req_memory = "16G"
c.BatchSpawnerBase.req_nprocs = "4"
# The single-user server's environment: kale's kernels (`kale kernels install`) and a
# state directory on the shared home, so clusters started from the notebook are found
# again from the sidebar, the CLI and later sessions.
c.Spawner.environment = {
    "DASK_KALE__STATE_DIR": "{homedir}/.local/share/kale",
    # Stores stay on node-local disk: SQLite on a parallel file system is unsafe.
    "DASK_KALE__STORE_DIR": "/tmp/{username}-kale-stores",
}
c.SlurmSpawner.batch_script = """#!/bin/bash
#SBATCH --partition={partition}
#SBATCH --time={runtime}
#SBATCH --output={homedir}/.jupyterhub-%j.log
#SBATCH --job-name=jupyterhub
#SBATCH --mem={memory}
#SBATCH --cpus-per-task={nprocs}
#SBATCH --export={keepvars}
set -euo pipefail
{prologue}
{cmd}
{epilogue}
"""
