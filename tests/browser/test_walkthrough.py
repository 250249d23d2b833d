"""What a new user meets in the first hour: each example notebook run top to bottom, twice
in the same kernel (Run All, then Run All again), in JupyterLab in chromium with the
Kale sidebar open at its default width.

The test fails on any traceback or error text in any output, on any widget in an error
state (or a plot that could not be created), on a number in a table cut to an ellipsis
or a metric drawn as NaN (the grids draw on a canvas: every text drawn there is
recorded), on a sidebar control clipped off its right edge or a sidebar scrolled
sideways, on a stopped cluster that does not say so, and on a saved notebook that
carries BokehJS (megabytes) in its outputs. Screenshots of each step go to
``test-artifacts/walkthrough/<notebook>/`` (not committed); with ``KALE_UPDATE_DOCS=1``
the panel's picture in ``docs/`` is refreshed from them.

Notebooks run on small settings (``KALE_NOTEBOOK_SMALL=1``), in one JupyterLab and one
chromium shared by all of them; each notebook's kernel is shut down when it is done, and
the seconds each took (both runs) are written to ``test-artifacts/walkthrough/times.json``.
``02_slurm`` needs the local Slurm (``bash deploy/slurm-dev/up.sh``) and ``04_distributed``
Horovod (``make horovod``).

Every notebook runs by default (``make test``). Measured on 2 cores lightly loaded, both
runs together: 01 32 s, 02 25 s, 03 59 s, 04 52 s, 05 64 s, 06 29 s, 07 26 s, 08 53 s,
09 22 s; with opening, checks and saving, all nine took 8 min 44 s (load about 4).
``KALE_WALKTHROUGH=01_quickstart,03_asha_cnn`` runs only the notebooks named.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from unittest import mock

import pytest

from tests.browser.conftest import ARTIFACTS, SIDEBAR_TAB, JupyterLabServer

REPO = Path(__file__).resolve().parents[2]
ALL_NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
_CHOSEN = os.environ.get("KALE_WALKTHROUGH", "all")
NOTEBOOKS = ALL_NOTEBOOKS if _CHOSEN == "all" else [n for n in _CHOSEN.split(",") if n]
TIMES = ARTIFACTS / "walkthrough" / "times.json"
# With KALE_UPDATE_DOCS=1, the README's pictures are refreshed from these screenshots.
DOCS = {("01_quickstart", "2-panel-0"): REPO / "docs" / "panel.png",
        ("01_quickstart", "2-sidebar-trials"): REPO / "docs" / "sidebar.png"}
SAVED_LIMIT = 1_000_000  # bytes: a saved notebook with BokehJS inline was 8 MB

# Every text drawn on a canvas (the trial grid, the plots), to find numbers cut to "…".
RECORD_CANVAS_TEXT = """
window.__kaleCanvasText = new Set();
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
  if (window.__kaleCanvasText.size < 50000) { window.__kaleCanvasText.add(String(text)); }
  return fillText.call(this, text, ...rest);
};
"""
ERROR_TEXT = re.compile(
    r"Traceback \(most recent call last\)|\b[A-Z]\w*(?:Error|Exception)\b|'NoneType' object"
    r"|update failed|status unavailable|\bunreachable\b|Error displaying widget"
    r"|Could not create a view|[Mm]odel not found|Failed to (?:display|render)")
# Error text a notebook shows on purpose (07 demonstrates a layout's shape error).
EXPECTED_ERRORS = {
    "07_layouts": re.compile(r"LayoutError: token 2 'DENSE\|64\|RELU' at offset \d+: DENSE needs"),
}
# A number (d3 writes its minus as U+2212) whose end was cut to an ellipsis (U+2026).
CUT_NUMBER = re.compile("^[-+\u2212]?[0-9][0-9.,e+\u2212-]*\u2026$")


@pytest.fixture(scope="module")
def walkthrough_lab(tmp_path_factory):
    """A JupyterLab of this module's own: small notebook settings, a private kale state."""
    root = tmp_path_factory.mktemp("walkthrough-lab")
    state = root.parent / "walkthrough-kale-state"
    with mock.patch.dict(os.environ, {"DASK_KALE__STATE_DIR": str(state),
                                      "KALE_NOTEBOOK_SMALL": "1"}):
        server = JupyterLabServer(root)
    server.wait()
    yield server
    server.stop()
    import dask.config

    import kale_ext as kale

    with dask.config.set({"kale.state-dir": str(state)}):
        for status in kale.clusters(clean=False):  # a run that failed half-way
            kale.stop(status.id)


class Walk:
    """One notebook in the lab: runs, checks, screenshots."""

    def __init__(self, server: JupyterLabServer, page, name: str) -> None:
        self.server, self.page, self.name = server, page, name
        self.shots = ARTIFACTS / "walkthrough" / name
        shutil.rmtree(self.shots, ignore_errors=True)
        self.shots.mkdir(parents=True)
        self.path = server.root / f"{name}.ipynb"
        shutil.copyfile(REPO / "notebooks" / f"{name}.ipynb", self.path)

    def shot(self, step: str, locator=None) -> Path:
        path = self.shots / f"{step}.png"
        if locator is not None:
            locator.scroll_into_view_if_needed()
            time.sleep(0.3)
            locator.screenshot(path=str(path))
        else:
            self.page.screenshot(path=str(path))
        docs = DOCS.get((self.name, step))
        if docs is not None and os.environ.get("KALE_UPDATE_DOCS") == "1":
            shutil.copyfile(path, docs)
        return path

    def open(self) -> None:
        page = self.page
        # The default workspace, as a new user meets it, emptied first: the earlier
        # notebooks' tabs (their kernels shut down) are not restored beside this one.
        forget = urllib.request.Request(
            f"{self.server.url}/lab/api/workspaces/default", method="DELETE",
            headers={"Authorization": f"token {self.server.token}"})
        try:
            urllib.request.urlopen(forget, timeout=15).close()
        except urllib.error.HTTPError as e:  # 404: nothing saved yet
            if e.code != 404:
                raise
        page.goto(f"{self.server.url}/lab/tree/{self.path.name}?token={self.server.token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        accept = page.locator(".jp-Dialog .jp-mod-accept")  # "Select Kernel", if asked
        try:
            accept.wait_for(timeout=3000)
            accept.click()
        except Exception:  # no dialog
            pass
        page.locator(SIDEBAR_TAB).wait_for(timeout=60_000)
        if not page.locator("#kale-sidebar").is_visible():
            page.click(SIDEBAR_TAB)
        page.locator("#kale-sidebar .kale-start-form").wait_for(timeout=30_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                               state="attached", timeout=60_000)

    def prompts(self) -> list[str]:
        # textContent: a cell scrolled out of view is not rendered (its innerText is '').
        return [p.strip() for p in self.page.locator(
            ".jp-Notebook .jp-CodeCell .jp-InputArea-prompt").all_text_contents()]

    def run_all(self, timeout: float = 420, while_searching=None) -> None:
        """Run All from the menu; wait until the last cell ran, failing at the first error.

        ``while_searching()`` is called once, when the sidebar lists a running search.
        """
        before = self.prompts()[-1]
        running = self.page.locator("#kale-sidebar .kale-search[data-state='running']")
        self.page.get_by_role("menuitem", name="Run", exact=True).click()
        self.page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        deadline = time.monotonic() + timeout
        while True:
            prompts = self.prompts()
            if prompts[-1] != before and re.fullmatch(r"\[\d+\]:", prompts[-1]) and \
                    not any("*" in p for p in prompts):
                return
            errors = self.error_outputs()
            assert not errors, f"{self.name}: a cell failed:\n" + "\n---\n".join(errors)
            if while_searching is not None and running.count():
                while_searching()
                while_searching = None
            assert time.monotonic() < deadline, \
                f"{self.name}: Run All did not finish in {timeout} s; prompts {prompts}"
            time.sleep(1)

    def output_texts(self, pattern: str = "") -> list[str]:
        """Every output's text, scripts and styles left out; also those of cells scrolled
        out of view (which JupyterLab does not render, so ``innerText`` reads '')."""
        return list(self.page.evaluate("""pattern => [
            ...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')].map(o => {
              const c = o.cloneNode(true);
              c.querySelectorAll('script, style').forEach(e => e.remove());
              return c.textContent;
            }).filter(t => t.includes(pattern))""", pattern))

    def error_outputs(self) -> list[str]:
        texts = self.output_texts()
        expected = EXPECTED_ERRORS.get(self.name)
        if expected is not None:
            texts = [expected.sub("", t) for t in texts]
        return [t[-1500:] for t in texts if ERROR_TEXT.search(t)]

    def problems(self) -> list[str]:
        page, found = self.page, []
        found += [f"error text in an output: {t}" for t in self.error_outputs()]
        drawn = page.evaluate("[...window.__kaleCanvasText]")
        found += [f"a number cut to an ellipsis on a canvas: {t!r}" for t in drawn
                  if CUT_NUMBER.match(t.strip())]
        found += [f"a metric drawn as {t!r} on a canvas (a missing value reads '\u2013')"
                  for t in drawn if t.strip() in ("NaN", "nan")]
        # Right of the sidebar's content box (its scroll bar excluded), or scrolled sideways.
        found += [f"a sidebar control clipped: {c}" for c in page.evaluate("""() => {
            const bar = document.querySelector('#kale-sidebar');
            const right = bar.getBoundingClientRect().left + bar.clientLeft + bar.clientWidth;
            return [...bar.querySelectorAll(
                'button, input, select, .kale-trials td, .kale-trials th')]
              .filter(e => e.offsetParent !== null)
              .filter(e => e.getBoundingClientRect().right > right + 1)
              .map(e => (e.className || e.tagName) + ' "' + e.textContent.trim() + '"')
              .concat(bar.scrollLeft ? [`the sidebar scrolled ${bar.scrollLeft} px sideways`]
                                     : []);
        }""")]
        return found


def shows_its_cluster(name: str) -> bool:
    """Whether a code cell of the notebook ends by displaying ``cluster``."""
    nb = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
    return any("".join(c["source"]).strip().splitlines()[-1:] == ["cluster"]
               for c in nb["cells"] if c["cell_type"] == "code")


def record_time(name: str, seconds: list[float]) -> None:
    """Add this notebook's run times to ``times.json`` (kept across notebooks)."""
    times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    times[name] = {"runs_s": [round(t, 1) for t in seconds], "total_s": round(sum(seconds), 1)}
    TIMES.write_text(json.dumps(times, indent=1, sort_keys=True) + "\n")


def shut_down_kernel(server: JupyterLabServer, path: Path) -> None:
    """End the notebook's session (and its kernel), so the next notebook has the CPUs."""
    for session in server.api("sessions"):
        if session.get("path") == path.name:
            server.api(f"sessions/{session['id']}", method="DELETE")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_an_example_notebook_runs_twice_with_the_sidebar_open(walkthrough_lab, browser, name):
    assert name in ALL_NOTEBOOKS, (
        f"KALE_WALKTHROUGH names {name!r}, which is not a notebook under notebooks/: "
        f"use 'all' or a comma-separated list of {ALL_NOTEBOOKS}")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(RECORD_CANVAS_TEXT)
    page = context.new_page()
    walk = Walk(walkthrough_lab, page, name)
    seconds: list[float] = []
    try:
        walk.open()
        walk.shot("0-opened")
        seen: list[str] = []

        def open_running_search() -> None:
            """Click the running search: its trials come into view, nothing clipped."""
            page.locator("#kale-sidebar .kale-search[data-state='running']").first.click()
            try:
                page.locator("#kale-sidebar .kale-trial-stop").first.wait_for(timeout=15_000)
            except Exception:  # the search ended first: its trials have no buttons
                page.locator("#kale-sidebar .kale-trial").first.wait_for(timeout=15_000)
            # The widest rows: a reported number and a sparkline beside the buttons (unless
            # the trials end before their second report).
            with contextlib.suppress(Exception):
                page.wait_for_function(
                    "() => [...document.querySelectorAll('#kale-sidebar .kale-trial')].some("
                    "r => r.querySelector('.kale-spark') && r.querySelector('.kale-trial-stop'))",
                    timeout=20_000)
            time.sleep(1)  # the smooth scroll
            assert page.locator("#kale-sidebar .kale-trials").is_visible()
            walk.shot("2-sidebar-trials", page.locator("#kale-sidebar"))
            seen.extend(walk.problems())

        for run in (1, 2):
            started = time.monotonic()
            walk.run_all(timeout=1000,
                         while_searching=open_running_search if run == 2 else None)
            seconds.append(time.monotonic() - started)
            print(f"{name}: Run All {run} took {seconds[-1]:.1f} s")
            assert not seen, f"{name}, a running search's trials:\n" + "\n".join(seen)
            time.sleep(3)  # the panels' last updates and the sidebar's next poll
            walk.shot(f"{run}-end")
            walk.shot(f"{run}-sidebar", page.locator("#kale-sidebar"))
            panels = page.locator(".jp-OutputArea-output:has(.datagrid-container)")
            for i in range(panels.count()):
                walk.shot(f"{run}-panel-{i}", panels.nth(i))
            problems = walk.problems()
            assert not problems, f"{name}, run {run}:\n" + "\n".join(problems)
            # The panels drew their plots (BokehJS came once with the page).
            if panels.count():
                assert page.locator(".bk-Canvas, .bk-Figure").count() > 0
            # The cluster the notebook stopped says so, with its buttons disabled.
            cluster_text = walk.output_texts("kale cluster kc-")
            if shows_its_cluster(name):
                assert cluster_text, f"{name}: the cluster's display is missing"
            assert all("stopped" in t for t in cluster_text), cluster_text
        record_time(name, seconds)
        # Saved, the notebook stays small: BokehJS is not in its outputs.
        page.keyboard.press("Control+s")
        deadline = time.monotonic() + 30
        while b"KALE_RESULT" not in walk.path.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.5)
        size = walk.path.stat().st_size
        assert b"KALE_RESULT" in walk.path.read_bytes(), "the notebook was not saved"
        assert size < SAVED_LIMIT, f"{name} saved is {size} bytes"
    except BaseException:
        walk.shot("failure")
        raise
    finally:
        context.close()
        shut_down_kernel(walkthrough_lab, walk.path)
