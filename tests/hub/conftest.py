"""A real JupyterHub on the test bed: deploy/jupyterhub/jupyterhub_config.py as a site runs
it (PAM login, batchspawner's SlurmSpawner, configurable-http-proxy), with the users
alice and bob of deploy/hub/install.sh.

The hub runs as root on the login node; its API listens on the test bed's bridge
(10.251.0.1), where single-user servers, Slurm jobs on node1..3, reach it; the proxy
serves the browser on a free loopback port. Missing pieces (root, the test bed, the
users, the proxy, chromium) fail the tests with the command that provides them.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.browser.conftest import _missing
from tests.browser.conftest import browser as browser  # the fixture, for tests/hub

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py"
PROXY = ROOT / ".venv" / "hub-proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
USERS = ("alice", "bob")
LOGIN_ADDR = "10.251.0.1"


def password(user: str) -> str:
    """The test password deploy/hub/install.sh set for ``user``."""
    return os.environ.get(f"KALE_HUB_PASSWORD_{user}", f"kale-{user}-pw")


def testbed_env() -> dict[str, str]:
    out = subprocess.run(["bash", str(ROOT / "deploy/testbed/env.sh")], capture_output=True,
                         text=True, check=True).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = subprocess.run(["bash", "-c", f"printf %s {value}"],
                                      capture_output=True, text=True).stdout
    return env


def _problem() -> str | None:
    if os.geteuid() != 0:
        return "the hub tests run the hub as root (PAM, runuser): run them as root"
    for user in USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"no user {user!r}: run make hub (bash deploy/hub/install.sh)"
    if not PROXY.exists():
        return f"no {PROXY}: run make hub (bash deploy/hub/install.sh)"
    try:
        import batchspawner  # noqa: F401
        import jupyter_server_proxy  # noqa: F401
        import jupyterhub  # noqa: F401
    except ImportError as e:
        return f"{e}: run make hub (pip install -e '.[hub]')"
    if subprocess.run(["bash", str(ROOT / "deploy/testbed/status.sh")],
                      capture_output=True).returncode != 0:
        return "the test bed is down: run make testbed-up"
    return _missing()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def as_user(user: str, code: str, env: dict[str, str], timeout: float = 120) -> str:
    """Run Python ``code`` as ``user`` on the login node with the hub's kale settings."""
    home = pwd.getpwnam(user).pw_dir
    user_env = {**env, "HOME": home, "DASK_KALE__STATE_DIR": f"{home}/.local/share/kale"}
    r = subprocess.run(["runuser", "-u", user, "--", sys.executable, "-c", code],
                       capture_output=True, text=True, env=user_env, cwd=home,
                       timeout=timeout)
    assert r.returncode == 0, f"as {user}: {code}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def squeue(user: str, env: dict[str, str]) -> list[dict[str, str]]:
    """The user's jobs: id, name, state, node, partition."""
    out = subprocess.run(["squeue", "-h", "-u", user, "-o", "%i|%j|%T|%N|%P"],
                         capture_output=True, text=True, env=env, check=True).stdout
    return [dict(zip(("id", "name", "state", "node", "partition"), line.split("|"),
                     strict=True))
            for line in out.splitlines() if line]


class Hub:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **testbed_env(),
                    "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
                    "KALE_HUB_URL": self.url,
                    "KALE_HUB_API_URL": f"http://{LOGIN_ADDR}:{_free_port(LOGIN_ADDR)}",
                    "KALE_HUB_PROXY_API_URL": f"http://127.0.0.1:{_free_port('127.0.0.1')}",
                    "KALE_HUB_DIR": str(folder), "KALE_HUB_WALLTIME": "00:20:00",
                    "KALE_HUB_DAEMON_WALLTIME": "00:20:00"}
        self.log = open(folder / "jupyterhub.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "jupyterhub"), "-f", str(CONFIG)],
            cwd=folder, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited with {self.proc.returncode}: "
                                   f"{(self.folder / 'jupyterhub.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/hub/api", timeout=5) as r:
                    json.load(r)
                return
            except (OSError, ValueError):
                time.sleep(0.3)
        raise TimeoutError(f"the hub did not answer on {self.url} in {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _clean_user(user: str, env: dict[str, str]) -> None:
    """Stop what an earlier run left: the user's server jobs, kale clusters, daemon jobs."""
    def cancel(prefix: str) -> None:
        for job in squeue(user, env):
            if job["name"].startswith(prefix):
                subprocess.run(["scancel", job["id"]], env=env, check=False)

    cancel("jupyterhub-")  # first: a running server would write the registry again
    home = Path(pwd.getpwnam(user).pw_dir)
    state = home / ".local" / "share" / "kale"
    clusters = state / "clusters"
    if clusters.is_dir() and any(clusters.iterdir()):
        # A record that cannot be stopped any more: its jobs are cancelled below.
        with contextlib.suppress(AssertionError):
            as_user(user, "import kale_ext as kale\n"
                          "for s in kale.clusters(clean=False): kale.stop(s.id)", env)
    cancel("kale-")
    shutil.rmtree(state, ignore_errors=True)
    for nb in home.glob("hub-*.ipynb"):
        nb.unlink()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    problem = _problem()
    if problem:
        pytest.fail(problem)
    folder = tmp_path_factory.mktemp("hub")
    folder.chmod(0o700)
    env = {**os.environ, **testbed_env()}
    for user in USERS:
        _clean_user(user, env)
    server = Hub(folder)
    server.wait()
    yield server
    server.stop()
    for user in USERS:
        _clean_user(user, env)


def write_notebook(user: str, name: str, cells: list[str]) -> None:
    """Write a notebook of ``cells`` into ``user``'s home, owned by the user."""
    entry = pwd.getpwnam(user)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = Path(entry.pw_dir) / name
    nbformat.write(nb, path)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def fetch(page: Any, url: str) -> tuple[int, str]:
    """GET ``url`` with the page's cookies (the user's hub login); no redirect followed."""
    r = page.request.get(url, max_redirects=0, fail_on_status_code=False)
    return r.status, r.text()
