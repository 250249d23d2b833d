"""The panel in a real kernel: nbclient runs a notebook that starts a search on a local
cluster, displays its panel, clicks its buttons and checks the panel's model."""

from __future__ import annotations

import json
import textwrap

import nbformat
import pytest
from nbclient import NotebookClient

CELLS = [
    """
    import json, time
    import kale_ext as kale
    from kale_ext.search import TrialState

    def train(config):
        for epoch in range(1, 80):
            time.sleep(0.05)
            kale.report(epoch=epoch, loss=config["lr"] / epoch, val_acc=1 - 1 / (epoch + 1))

    cluster = kale.start_cluster(kind="local", backend="dask", workers=2)
    search = kale.Search(train, {"lr": kale.loguniform(1e-3, 1.0)}, metric="val_acc",
                         trials=3, max_concurrent=2, cluster=cluster).start()
    search  # the default display of a Search is its panel
    """,
    """
    panel = search.panel(interval=0.05)
    def wait(cond, what, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            if cond():
                return
            time.sleep(0.05)
        raise AssertionError(what)
    wait(lambda: (panel.table.frame()["epoch"] >= 2).sum() >= 2, "rows with epochs")
    panel.table.select_trials([1])
    panel.controls.buttons["stop"].click()
    wait(lambda: search.runs[1].state is TrialState.STOPPED, "trial 1 stopped")
    wait(lambda: panel.table.frame().loc[1, "status"] == "stopped", "stopped row")
    stop_message = panel.controls.message.value
    panel.controls.buttons["stop_search"].click()
    search.wait(60)
    wait(lambda: panel.book.state == "stopped", "search stopped")
    panel._tick()
    table, results = panel.table.frame(), search.results().set_index("trial")
    print(json.dumps({
        "message": stop_message,
        "trial1": table.loc[1, "status"],
        "same_rows": list(table.index) == list(results.index),
        "same_states": list(table["status"]) == list(results["state"]),
        "same_epochs": list(table["epoch"]) == list(results["epoch"]),
        "lines": sorted(int(k) for k in panel.curves.source.data["key"]),
    }))
    panel.close()
    cluster.stop()
    """,
]


@pytest.mark.slow
def test_panel_in_a_real_kernel(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(c).strip()) for c in CELLS]
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = nb.cells[0].outputs
    # The search displayed as a panel: a small BokehJS loader, then the widget view.
    kinds = {k for o in shown for k in o.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" in kinds, shown
    assert "application/javascript" in kinds or "application/vnd.bokehjs_load.v0+json" in kinds
    # BokehJS itself comes from the server once per page, never inside the output (a
    # saved notebook carried 8 MB of it): the whole cell's output is a few kB.
    size = len(json.dumps(shown))
    assert size < 20_000, f"the panel's output is {size} bytes"
    assert "Bokeh.set_log_level" not in json.dumps(shown)
    text = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    result = json.loads(text.strip().splitlines()[-1])
    assert result["trial1"] == "stopped"
    assert "stop: asked trial(s) 1" in result["message"]
    assert result["same_rows"] and result["same_states"] and result["same_epochs"]
    assert result["lines"] == [0, 1, 2]
