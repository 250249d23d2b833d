"""Browser fixtures: a real JupyterLab and Debian's chromium driven by Playwright.

Reusable by every browser test:

- ``jupyter_lab``: a JupyterLab server (session-wide) on a free loopback port with a
  token and a temporary root folder (``.url``, ``.token``, ``.root``, ``.api(path)``).
- ``browser`` / ``page``: headless chromium (``/usr/bin/chromium``, never a downloaded
  one) and a fresh page per test.
- ``lab``: a :class:`Lab` helper on that page: open a notebook, run cells, read
  outputs, save screenshots under ``test-artifacts/``.

Tests here carry ``@pytest.mark.browser``; without chromium or Playwright they are
skipped with the reason (``bash deploy/browser/install.sh`` installs both).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"no {CHROMIUM} on this machine: run bash deploy/browser/install.sh"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python playwright is not installed: run bash deploy/browser/install.sh"
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        return "jupyterlab is not installed: pip install -e '.[widgets]'"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _missing()
    if reason is None:
        return
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JupyterLabServer:
    def __init__(self, root: Path, state: Path | None = None) -> None:
        self.root = root
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        # Kernels started by this lab keep their clusters and searches in a private
        # registry, which the fixture's teardown empties.
        self.state = state or root.parent / "kale-state"
        env = {**os.environ, "DASK_KALE__STATE_DIR": str(self.state)}
        self.log = open(root.parent / "jupyterlab.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
             f"--port={self.port}", f"--ServerApp.token={self.token}",
             f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
             *(["--allow-root"] if os.geteuid() == 0 else []),
             "--LabApp.check_for_updates_class="
             "jupyterlab.handlers.announcements.NeverCheckForUpdate"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=root, env=env,
            start_new_session=True)

    def api(self, path: str, method: str = "GET") -> Any:
        """Call the server's REST API (``/api/<path>``) with the token."""
        req = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=15) as r:
            body = r.read()
            return json.loads(body) if body else None

    def wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}; see "
                                   f"{self.log.name}")
            try:
                self.api("status")
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"JupyterLab did not answer on {self.url} in {timeout} s")

    def stop_clusters(self) -> None:
        """Stop every cluster the lab's kernels left in its registry (local clusters
        outlive their kernel by design)."""
        import dask.config

        import kale_ext as kale

        with dask.config.set({"kale.state-dir": str(self.state)}):
            for status in kale.clusters(clean=False):
                kale.stop(status.id)

    def stop(self) -> None:
        self.stop_clusters()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def private_lab(tmp_path_factory: Any, name: str) -> Iterator[JupyterLabServer]:
    """Run a JupyterLab of one module's own, with a private kale state dir.

    Its kernels and its kale API share that state, so its sidebar shows the module's
    clusters and searches only; what a failed test left registered is stopped at the end.
    """
    root = tmp_path_factory.mktemp(f"{name}-lab")
    server = JupyterLabServer(root, root.parent / f"{name}-kale-state")
    server.wait()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab-root")
    server = JupyterLabServer(root)
    server.wait()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    p = context.new_page()
    yield p
    context.close()


# The notebook in view: a workspace restored from an earlier test may hold others, hidden.
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"
SIDEBAR_TAB = "li.lm-TabBar-tab[data-id='kale-sidebar']"


class Lab:
    """Drives JupyterLab in ``page``: notebooks, cells, outputs, screenshots."""

    def __init__(self, server: JupyterLabServer, page: Any) -> None:
        self.server, self.page = server, page

    def open_notebook(self, name: str, cells: list[str]) -> None:
        """Write a notebook of ``cells`` into the lab's root and open it (kernel started)."""
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
        nbformat.write(nb, self.server.root / name)
        self.page.goto(f"{self.server.url}/lab/tree/{name}?token={self.server.token}")
        self.page.wait_for_selector(f"{NOTEBOOK} .jp-Cell", timeout=60_000)
        self.accept_dialog()  # "Select Kernel", when the lab asks
        no_news = self.page.get_by_role("button", name="No", exact=True)
        if no_news.count():  # "notified about official Jupyter news?": no
            no_news.first.click()
        self.wait_idle(timeout=60)

    def start_search(self, name: str, cells: list[str]) -> Any:
        """Open notebook ``name``, run its cluster (cell 0) and search (cell 1) cells, and
        return kale's sidebar, shown."""
        self.open_notebook(name, cells)
        self.run_cell(0)
        self.wait_for_output(0, "started kc-", timeout=240)
        self.run_cell(1)
        self.wait_for_output(1, "search started", timeout=120)
        return self.open_sidebar()

    def open_sidebar(self) -> Any:
        """Show kale's sidebar and return it. The lab may restore it open, and a click on
        its tab would then close it."""
        self.page.locator(SIDEBAR_TAB).wait_for(timeout=60_000)
        if not self.page.locator("#kale-sidebar").is_visible():
            self.page.click(SIDEBAR_TAB)
        sidebar = self.page.locator("#kale-sidebar")
        sidebar.wait_for(state="visible")
        return sidebar

    def accept_dialog(self, timeout: float = 3) -> bool:
        """Press the default button of a dialog if one opens within ``timeout`` s."""
        button = self.page.locator(".jp-Dialog .jp-mod-accept")
        try:
            button.wait_for(timeout=timeout * 1000)
        except Exception:  # playwright's TimeoutError: no dialog
            return False
        button.click()
        return True

    def cell(self, index: int) -> Any:
        """Cell ``index`` of the notebook in view (the lab may restore others in hidden tabs)."""
        return self.page.locator(f"{NOTEBOOK} .jp-Cell").nth(index)

    def run_cell(self, index: int) -> None:
        """Click into cell ``index``'s editor and press Shift+Enter."""
        self.cell(index).locator(".cm-content").click()
        self.page.keyboard.press("Shift+Enter")

    def wait_idle(self, timeout: float = 120) -> None:
        """Wait until the kernel is idle (the toolbar's indicator may be hidden)."""
        self.page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                                    state="attached", timeout=timeout * 1000)

    def output_text(self, index: int) -> str:
        return str(self.cell(index).locator(".jp-OutputArea").inner_text())

    def wait_for_output(self, index: int, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output_text(index)
            if text in out:
                return out
            time.sleep(0.25)
        raise AssertionError(f"cell {index} never showed {text!r}; it shows: "
                             f"{self.output_text(index)[-2000:]}")

    def screenshot(self, name: str, copy_to: Path | None = None, *, locator: Any = None,
                   **kwargs: Any) -> Path:
        """Save a screenshot as ``test-artifacts/<name>.png`` (of ``locator``'s element
        when given, else of the page); with ``KALE_UPDATE_DOCS=1`` also copy it to
        ``copy_to`` (the README's pictures under docs/). An element is cut from the
        visible page rather than shot on its own: a live panel keeps growing and never
        holds still long enough for an element screenshot."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        if locator is not None:
            box = locator.bounding_box()
            assert box, f"{locator} is not on screen for screenshot {name!r}"
            bottom = min(box["y"] + box["height"], self.page.viewport_size["height"])
            kwargs["clip"] = {"x": box["x"], "y": box["y"], "width": box["width"],
                              "height": bottom - box["y"]}
        self.page.screenshot(path=str(path), **kwargs)
        if copy_to is not None and os.environ.get("KALE_UPDATE_DOCS") == "1":
            copy_to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy_to)
        return path


@pytest.fixture
def lab(jupyter_lab, page):
    yield Lab(jupyter_lab, page)
