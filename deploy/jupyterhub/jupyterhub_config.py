"""JupyterHub on an HPC login node: each user's server is a Slurm job (batchspawner).

The servers run kale_ext's server extension, its sidebar and jupyter-server-proxy.

Run as root on the login node: ``jupyterhub -f deploy/jupyterhub/jupyterhub_config.py``
(deploy/jupyterhub/README.md). Every site setting is read from the environment, with the
defaults below; tests/hub starts this very file on the test bed of deploy/testbed:

====================  ==========================================  =========================
variable              meaning                                     default
====================  ==========================================  =========================
KALE_HUB_URL          the public URL the proxy serves             http://127.0.0.1:8000
KALE_HUB_API_URL      where single-user servers reach the hub     http://10.251.0.1:8081
KALE_HUB_DIR          hub database, cookie secret, proxy token    the current directory
KALE_HUB_USERS        users allowed to log in (PAM checks them)   alice,bob
KALE_HUB_PYTHON       the users' Python, with kale_ext installed  the hub's own Python
KALE_HUB_PROXY        configurable-http-proxy                     .venv/hub-proxy's
KALE_HUB_PARTITION    partition of CPU servers                    regular
KALE_HUB_GPU_PARTITION  partition of GPU servers                  gpu
KALE_HUB_ACCOUNT      Slurm account (``--account``)               none
KALE_HUB_WALLTIME     walltime of a server job                    04:00:00
KALE_HUB_NODE_ADDRS   ``name=address ...`` when the login node    KALE_TESTBED_NODE_ADDRS
                      cannot resolve compute node names
KALE_HUB_PROXY_HOSTS  compute-node addresses jupyter-server-proxy  the node addresses
                      may forward to
====================  ==========================================  =========================
"""

# ruff: noqa: F821 - `c` is JupyterHub's configuration object
from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from batchspawner import SlurmSpawner

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


HUB_DIR = Path(_env("KALE_HUB_DIR", os.getcwd()))
PYTHON = _env("KALE_HUB_PYTHON", sys.executable)
BIN = Path(PYTHON).parent  # jupyterhub-singleuser and batchspawner-singleuser live beside it
NODE_ADDRS = dict(pair.split("=", 1) for pair in
                  _env("KALE_HUB_NODE_ADDRS",
                       os.environ.get("KALE_TESTBED_NODE_ADDRS", "")).split())
PROXY_HOSTS = _env("KALE_HUB_PROXY_HOSTS", " ".join(NODE_ADDRS.values())).split()

# -- the hub, its proxy and who may log in -------------------------------------------
c.JupyterHub.bind_url = _env("KALE_HUB_URL", "http://127.0.0.1:8000")
# Single-user servers run on compute nodes: the hub's API must listen where they reach
# the login node (never its loopback, which a node does not see).
c.JupyterHub.hub_bind_url = _env("KALE_HUB_API_URL", "http://10.251.0.1:8081")
c.JupyterHub.db_url = f"sqlite:///{HUB_DIR / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(HUB_DIR / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(HUB_DIR / "jupyterhub.pid")
c.ConfigurableHTTPProxy.command = [
    _env("KALE_HUB_PROXY", str(ROOT / ".venv/hub-proxy/node_modules/.bin/"
                               "configurable-http-proxy"))]
c.ConfigurableHTTPProxy.api_url = _env("KALE_HUB_PROXY_API_URL", "http://127.0.0.1:8001")
c.ConfigurableHTTPProxy.pid_file = str(HUB_DIR / "jupyterhub-proxy.pid")
# When the hub stops, the proxy stops too (tests start a fresh hub each time).
c.JupyterHub.cleanup_proxy = True
# Servers are batch jobs: leave them running across a hub restart.
c.JupyterHub.cleanup_servers = False

# Local Unix accounts checked by PAM (the hub runs as root to read /etc/shadow).
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = set(_env("KALE_HUB_USERS", "alice,bob").split(","))

# -- single-user servers as Slurm jobs ---------------------------------------------
# Profiles offered on the spawn page. Each is a fixed set of batch options, so that a
# user's choice (from the form or the REST API) can never put text of its own into the
# batch script.
PROFILES: dict[str, dict[str, str]] = {
    "cpu": {"label": "CPU: 2 cores, 2 GB", "partition": _env("KALE_HUB_PARTITION", "regular"),
            "nprocs": "2", "memory": "2000M", "gres": ""},
    "gpu": {"label": "GPU: 1 GPU, 4 cores, 8 GB",
            "partition": _env("KALE_HUB_GPU_PARTITION", "gpu"),
            "nprocs": "4", "memory": "8000M", "gres": "gpu:1"},
}


def _options_form(spawner: Any) -> str:
    choices = "".join(f'<option value="{key}">{p["label"]}</option>'
                      for key, p in PROFILES.items())
    return f'<label for="profile">Server</label><select name="profile">{choices}</select>'


def _options_from_form(formdata: dict[str, list[str]]) -> dict[str, str]:
    return {"profile": formdata.get("profile", ["cpu"])[0]}


def _apply_user_options(spawner: Any, user_options: dict[str, Any]) -> None:
    key = str(user_options.get("profile") or "cpu")
    if key not in PROFILES:
        raise ValueError(f"Unknown server profile {key!r}: choose one of {sorted(PROFILES)}.")
    profile = PROFILES[key]
    spawner.req_partition = profile["partition"]
    spawner.req_nprocs = profile["nprocs"]
    spawner.req_memory = profile["memory"]
    spawner.req_gres = profile["gres"]


class KaleSlurmSpawner(SlurmSpawner):
    """SlurmSpawner whose batch script sees only the site's settings and profile.

    batchspawner would also format raw ``user_options`` into the script. Node names the
    login node cannot resolve are mapped to their addresses.
    """

    async def _get_batch_script(self, **subvars: Any) -> str:
        trusted = {**self.get_req_subvars(), "cmd": subvars["cmd"]}
        return await super()._get_batch_script(**trusted)

    def state_gethost(self) -> str | None:
        """Return the address of the node running the server job."""
        host = super().state_gethost()
        return NODE_ADDRS.get(host or "", host)


c.JupyterHub.spawner_class = KaleSlurmSpawner
c.Spawner.options_form = _options_form
c.Spawner.options_from_form = _options_from_form
c.Spawner.apply_user_options = _apply_user_options
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 300  # a queued job may take a while to start
c.Spawner.http_timeout = 120
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.BatchSpawnerBase.batchspawner_singleuser_cmd = str(BIN / "batchspawner-singleuser")
c.BatchSpawnerBase.req_runtime = _env("KALE_HUB_WALLTIME", "04:00:00")
c.BatchSpawnerBase.req_partition = PROFILES["cpu"]["partition"]
c.BatchSpawnerBase.req_nprocs = PROFILES["cpu"]["nprocs"]
c.BatchSpawnerBase.req_memory = PROFILES["cpu"]["memory"]
account = os.environ.get("KALE_HUB_ACCOUNT", "")
c.SlurmSpawner.req_options = f"--account={account}" if account else ""
# The hub runs as root: it submits, queries and cancels each user's job as that user.
# runuser needs no sudoers entry; a hub running as an unprivileged user keeps
# batchspawner's default, "sudo -E -u {username}", with the sudo rules of
# deploy/jupyterhub/README.md.
c.BatchSpawnerBase.exec_prefix = ("runuser -u {username} --" if os.geteuid() == 0
                                  else "sudo -E -u {username}")
# Slurm clients of the login node find their controller through SLURM_CONF.
c.Spawner.env_keep = ["PATH", "LANG", "LC_ALL", "SLURM_CONF", "SCRATCH"]


def _home(spawner: Any) -> str:
    return pwd.getpwnam(spawner.user.name).pw_dir


# JupyterHub formats no "{homedir}"/"{username}" in Spawner.environment: values that
# depend on the user are callables of the spawner.
c.Spawner.environment = {
    # kale's registry on the shared home, so clusters started in one server job are
    # found again from the next one, the CLI and the sidebar. Search stores go under it
    # (kale's default) so a search can be resumed from a server on another node.
    "DASK_KALE__STATE_DIR": lambda sp: f"{_home(sp)}/.local/share/kale",
    # A cluster's daemon becomes a batch job of its own, so the cluster outlives the
    # server job it was started from (deploy/jupyterhub/kale-daemon-job).
    "DASK_KALE__DAEMON_PREFIX": str(HERE / "kale-daemon-job"),
    "KALE_DAEMON_WALLTIME": _env("KALE_HUB_DAEMON_WALLTIME", "12:00:00"),
    "HOME": _home,
}
# One argument holding a JSON list (the trait also takes a callable, so it is not given
# once per host), quoted for the batch script's shell.
c.Spawner.args = [shlex.quote("--ServerProxy.host_allowlist="
                              + json.dumps(["localhost", "127.0.0.1", *PROXY_HOSTS]))]
c.SlurmSpawner.batch_script = """#!/bin/bash
#SBATCH --job-name=jupyterhub-{{username}}
#SBATCH --output={{homedir}}/.jupyterhub-%j.log
#SBATCH --chdir={{homedir}}
#SBATCH --export={{keepvars}}
#SBATCH --time={{runtime}}
{% if partition %}#SBATCH --partition={{partition}}
{% endif %}{% if memory %}#SBATCH --mem={{memory}}
{% endif %}{% if nprocs %}#SBATCH --cpus-per-task={{nprocs}}
{% endif %}{% if gres %}#SBATCH --gres={{gres}}
{% endif %}{% if options %}#SBATCH {{options}}
{% endif %}set -euo pipefail
{{prologue}}
{{srun}} {{cmd}}
{{epilogue}}
"""
if shutil.which("sbatch") is None:
    raise SystemExit("sbatch is not on PATH: the hub submits single-user servers with it.")
