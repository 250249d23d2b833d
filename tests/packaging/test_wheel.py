"""The wheel a user installs: built from a clean clone, installed into a fresh venv with no
Node on PATH, where the prebuilt lab extension is listed enabled and the server
extension answers its REST routes.

The build itself needs Node (the wheel carries the lab extension built by ``jlpm
build:prod``); installing and running the wheel must not. Dependencies come from pip's
configured indexes and its cache, as for a user; nothing is shared with this checkout's
venv.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
NODE_TOOLS = ("node", "nodejs", "npm", "npx", "yarn")


def run(args: list[str | Path], env: dict[str, str] | None = None, timeout: float = 600,
        cwd: Path | None = None) -> str:
    """Run ``args``; return stdout and stderr together, failing with them on an error."""
    # Never this checkout as the working directory: `python -c` would import its kale_ext.
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=cwd or Path(tempfile.gettempdir()))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(map(str, args))} exited {proc.returncode}:\n" \
                                 f"{output[-4000:]}"
    return output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, token: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:  # not listening yet
        return 0, b""


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    """A wheel built by pip from a fresh ``git clone`` of this repository's HEAD."""
    if shutil.which("node") is None:
        pytest.skip("node is missing: building the wheel builds the lab extension, which "
                    "needs Node.js >= 20")
    clone = tmp_path / "clone"
    run(["git", "clone", "--quiet", "--no-hardlinks", REPO, clone], timeout=120)
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", dist, clone])
    (built,) = dist.glob("kale_ext-*.whl")
    return built


def test_wheel_installs_without_node_and_both_extensions_work(wheel: Path, tmp_path: Path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], timeout=120)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    path = os.pathsep.join([str(venv / "bin"), str(empty)])
    assert [t for t in NODE_TOOLS if shutil.which(t, path=path)] == []
    env = {k: v for k, v in os.environ.items()
           if k not in ("PATH", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "JUPYTER_PATH")}
    env.update(PATH=path, JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
               JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", wheel, "jupyterlab>=4.0,<5"], env=env)

    # The prebuilt extension, copied into the venv (not linked to a source tree), enabled.
    installed = venv / "share" / "jupyter" / "labextensions" / "kale-ext"
    assert (installed / "static" / "style.js").is_file()
    assert not installed.is_symlink()
    listing = re.sub(r"\x1b\[[0-9;]*m", "", run([venv / "bin" / "jupyter", "labextension",
                                                 "list"], env=env))
    section = listing.split(str(installed.parent), 1)[1].split("\n/", 1)[0]
    assert re.search(r"kale-ext v\S+ enabled OK \(python, kale-ext\)", section), listing
    servers = re.sub(r"\x1b\[[0-9;]*m", "", run([venv / "bin" / "jupyter", "server",
                                                 "extension", "list"], env=env))
    assert "kale_ext.server enabled" in servers and "kale_ext.server  OK" in servers, servers

    # A server of that venv answers the kale REST routes, behind its token.
    port, token = free_port(), secrets.token_hex(16)
    root = tmp_path / "root"
    root.mkdir()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [str(venv / "bin" / "jupyter"), "server", "--no-browser", "--allow-root",
         "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{base}/api/status", token)[0] == 200 or server.poll() is not None,
                 timeout=120, what="jupyter server to answer")
        assert server.poll() is None, (tmp_path / "server.log").read_text()[-4000:]
        status, body = get(f"{base}/kale/api/clusters", token)
        assert status == 200, body
        assert json.loads(body) == []  # a fresh state directory: no cluster
        status, body = get(f"{base}/kale/api/profiles", token)
        assert status == 200 and isinstance(json.loads(body), (list, dict)), body
        assert get(f"{base}/kale/api/clusters", None)[0] == 403  # no token, no answer
    finally:
        server.terminate()
        server.wait(60)
        log.close()
    # The venv's kale is the wheel's, not this checkout's.
    where = run([python, "-c", "import kale_ext; print(kale_ext.__file__)"], env=env)
    assert where.strip().startswith(str(venv)), where
