"""The search panel in a real JupyterLab in headless chromium: rows and curves update,
a click on a row and on Stop stops that trial."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

DOCS_PNG = Path(__file__).resolve().parents[2] / "docs" / "panel.png"

SETUP = """\
import time
import kale_ext as kale

def train(config):
    for epoch in range(1, 1000):  # longer than the test: trial 0 is still running at Stop
        time.sleep(0.15)
        kale.report(epoch=epoch, loss=config["lr"] / epoch, val_loss=config["lr"] / epoch + 0.05,
                    acc=1 - 1 / (epoch + 1), val_acc=(1 - 1 / (epoch + 1)) * (1 - config["lr"]))

cluster = kale.start_cluster(kind="local", backend="dask", workers=2)
search = kale.Search(train, {"lr": kale.loguniform(1e-3, 1.0),
                             "optimizer": kale.choice(["adam", "sgd"])},
                     metric="val_acc", trials=4, max_concurrent=2, cluster=cluster,
                     seed=0).start()
panel = search.panel()
panel"""

CHECK = """\
print(panel.table.selected, repr(panel.controls.message.value), panel.updater.error)
print("STATE", search.runs[0].state.label, panel.table.selected,
      max(panel.curves.line(1)[0] or [0]))"""

CLEANUP = """\
search.stop(); search.wait(60); panel.close(); cluster.stop(); print("CLEANED")"""


def _wait_text(page, text: str, timeout: float = 20) -> None:
    """Wait until an HTML widget's text contains ``text``."""
    page.wait_for_function(
        "t => [...document.querySelectorAll('.widget-html-content')]"
        ".some(e => e.textContent.replace(/\\s+/g, ' ').includes(t))",
        arg=text, timeout=timeout * 1000)


def _summary(lab) -> str:
    return str(lab.cell(0).locator(".widget-html-content").nth(1).inner_text())


@pytest.mark.browser
@pytest.mark.slow
def test_panel_updates_and_stops_a_trial_in_jupyterlab(lab):
    page = lab.page
    lab.open_notebook("panel.ipynb", [SETUP, CHECK, CLEANUP])
    if page.locator("#jp-left-stack").is_visible():
        page.keyboard.press("Control+b")  # fold the left sidebar: the panel gets the width
    try:
        lab.run_cell(0)
        grid = lab.cell(0).locator(".datagrid-container").first
        grid.wait_for(timeout=90_000)
        page.locator(".bk-Figure >> visible=true").first.wait_for(timeout=60_000)
        assert page.get_by_text("Could not create a view").count() == 0
        # Rows and curves update: the summary moves on while the curves grow.
        _wait_text(page, "2 running", timeout=60)
        first = _summary(lab)
        time.sleep(1.5)
        assert _summary(lab) != first
        # Select trial 0's row (the first body row) and press Stop.
        box = grid.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + 20 + 11)
        try:
            # Generous: on 2 shared cores the page may run seconds behind the kernel.
            _wait_text(page, "selected trial(s): 0", timeout=45)
        except Exception:
            lab.run_cell(1)
            print("DEBUG", lab.wait_for_output(1, "STATE"))
            raise
        lab.cell(0).locator("button.widget-button",
                            has_text=re.compile(r"^\s*Stop\s*$")).click()
        _wait_text(page, "stop: asked trial(s) 0")
        _wait_text(page, "1 stopped")
        lab.screenshot("panel-browser")
        lab.cell(0).locator(".jp-OutputArea").scroll_into_view_if_needed()
        time.sleep(0.5)
        lab.screenshot("panel", copy_to=DOCS_PNG,
                       locator=lab.cell(0).locator(".jp-OutputArea"))
        lab.run_cell(1)
        out = lab.wait_for_output(1, "STATE")
        assert "STATE stopped [0]" in out
        assert float(out.split()[-1]) >= 3  # trial 1's line holds its streamed epochs
    except BaseException:
        lab.screenshot("panel-browser-failure")
        raise
    finally:
        _cleanup(lab)


def _cleanup(lab) -> None:
    """Stop the search and cluster from the notebook; else shut the kernel down."""
    try:
        lab.accept_dialog(timeout=0.5)
        lab.run_cell(2)
        lab.wait_for_output(2, "CLEANED", timeout=90)
    except Exception:  # the page is stuck: the kernel's death ends its local cluster
        for session in lab.server.api("sessions"):
            lab.server.api(f"kernels/{session['kernel']['id']}", method="DELETE")
        lab.server.stop_clusters()
