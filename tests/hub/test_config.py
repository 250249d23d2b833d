"""deploy/jupyterhub/jupyterhub_config.py loaded as JupyterHub loads it: the batch script
of a server holds the site's settings and the chosen profile only, whatever else a user
posts as ``user_options`` through the hub's REST API; an unknown profile is refused."""

from __future__ import annotations

import asyncio
import runpy
from types import SimpleNamespace
from typing import Any

import pytest
from traitlets.config import Config

from tests.hub.conftest import CONFIG


def _spawner(user: str) -> tuple[Config, Any]:
    c = Config()
    runpy.run_path(str(CONFIG), init_globals={"c": c})
    hub = SimpleNamespace(public_host="", url="/hub/", base_url="/hub/",
                          api_url="http://10.251.0.1:8081/hub/api")
    spawner = c.JupyterHub.spawner_class(
        config=c, hub=hub, user=SimpleNamespace(name=user, url=f"/user/{user}/",
                                                escaped_name=user))
    return c, spawner


def _script(c: Config, spawner: Any, user_options: dict[str, Any]) -> str:
    spawner.user_options = user_options
    c.Spawner.apply_user_options(spawner, user_options)
    # As batchspawner's submit_batch_script builds them: user_options over the settings.
    subvars = {**spawner.get_req_subvars(), "cmd": "jupyterhub-singleuser", **user_options}
    return str(asyncio.run(spawner._get_batch_script(**subvars)))


def test_batch_script_takes_the_profile_and_nothing_else_from_the_user():
    c, spawner = _spawner("bob")
    script = _script(c, spawner, {"profile": "gpu", "prologue": "touch /tmp/owned",
                                  "options": "--uid=0", "partition": "admin"})
    assert "#SBATCH --partition=gpu\n" in script
    assert "#SBATCH --gres=gpu:1\n" in script
    assert "#SBATCH --job-name=jupyterhub-bob\n" in script
    assert "/tmp/owned" not in script and "--uid" not in script and "admin" not in script
    # The user's environment is passed by name; kale's settings are among the names.
    export = next(line for line in script.splitlines() if line.startswith("#SBATCH --export"))
    assert {"DASK_KALE__STATE_DIR", "DASK_KALE__DAEMON_PREFIX", "HOME"} <= set(
        export.split("=", 1)[1].split(","))
    env = spawner.get_env()
    assert env["DASK_KALE__STATE_DIR"] == f"{env['HOME']}/.local/share/kale"
    assert "{" not in env["DASK_KALE__STATE_DIR"]


def test_cpu_profile_is_the_default_and_an_unknown_one_is_refused():
    c, spawner = _spawner("alice")
    assert "#SBATCH --partition=regular\n" in _script(c, spawner, {})
    with pytest.raises(ValueError, match=r"Unknown server profile 'huge'.*cpu"):
        c.Spawner.apply_user_options(spawner, {"profile": "huge"})
