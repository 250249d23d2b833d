"""Shared fixtures: every test gets its own kale state directory.

Strict mode (tests/strict.py): with ``KALE_STRICT=1``, as ``make test`` runs, a test that
would be skipped for a missing component fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import dask.config
import pytest

from tests.strict import (  # noqa: F401 - pytest finds hooks by name in a conftest
    pytest_make_collect_report,
    pytest_report_header,
    pytest_runtest_makereport,
)


@pytest.fixture(autouse=True)
def kale_state(tmp_path, monkeypatch):
    """Point the registry at a private folder so tests never see each other's records."""
    state = tmp_path / "kale-state"
    with dask.config.set({"kale.state-dir": str(state)}):
        monkeypatch.setenv("DASK_KALE__STATE_DIR", str(state))  # for child processes
        yield state


def run_python(code: str, timeout: float = 120) -> str:
    """Run ``code`` in a fresh Python process (another kernel, say); return its stdout."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll ``condition()`` until it is truthy and return its value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def process_gone(pid: int, timeout: float = 30) -> bool:
    """Wait until process ``pid`` on this host has ended (an unreaped zombie counts)."""
    from kale_ext import registry

    return bool(wait_for(lambda: registry.pid_alive(pid, os.uname().nodename) is False,
                         timeout, what=f"process {pid} to end"))


def worker_pages(client: Any) -> dict[str, int]:
    """HTTP status of the pages a Dask worker's own web server could serve, from the
    address it listens on; a worker that serves none answers 404 to each."""
    import urllib.error
    import urllib.request

    paths = ("/metrics", "/health", "/status", "/info/main/workers.html")
    seen: dict[str, int] = {}
    for address, worker in client.scheduler_info()["workers"].items():
        host = address.split("://", 1)[1].rsplit(":", 1)[0]
        port = worker["services"]["dashboard"]
        for path in paths:
            url = f"http://{host}:{port}{path}"
            try:
                with urllib.request.urlopen(url, timeout=15) as r:
                    seen[url] = r.status
            except urllib.error.HTTPError as e:
                seen[url] = e.code
    return seen


def group_alive(pgid: int) -> bool:
    """Whether any process of process group ``pgid`` lives."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def slurm_available() -> bool:
    if shutil.which("sinfo") is None:
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return proc.returncode == 0 and any(s in proc.stdout for s in ("idle", "mix", "alloc"))


def pytest_collection_modifyitems(config, items):
    # Browser tests last: Playwright's sync API keeps an event loop running in the main
    # thread while its session-wide browser lives, which breaks asyncio-based tests
    # (jupyter_server's) that would run after it.
    items.sort(key=lambda item: "browser" in item.keywords)
    if slurm_available():
        return
    skip = pytest.mark.skip(
        reason="no running Slurm on this machine: start it with deploy/slurm-dev/up.sh "
        "(make test does)"
    )
    for item in items:
        if "slurm" in item.keywords:
            item.add_marker(skip)
