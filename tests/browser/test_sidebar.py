"""The Kale sidebar in a real JupyterLab (with kale_ext installed) in headless chromium:
a cluster started from a notebook shows up, is scaled and stopped from the sidebar; a
running search shows its trials, each with a sparkline of its metric, and one is
stopped; connect code lands in a cell; a failed start stays listed with its reason until
dismissed. The sidebar keeps the lab's default width throughout."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest

from tests.browser.conftest import SIDEBAR_TAB, private_lab

DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "sidebar.png"

START = ("import kale_ext as kale\n"
         "cluster = kale.start_cluster(kind='local', backend='dask', workers=1)\n"
         "print('started', cluster.id)")
SEARCH = ("import time\n"
          "def train(config):\n"
          "    for epoch in range(1, 600):\n"
          "        kale.report(epoch=epoch, val_acc=config['x'] * (1 - 1 / epoch))\n"
          "        time.sleep(0.05)\n"
          "search = kale.Search(train, {'x': kale.uniform(0, 1)}, metric='val_acc',\n"
          "                     trials=2, cluster=cluster, name='sidebar-search').start()\n"
          "print('search started')")
STOP_SEARCH = ("search.stop(); search.wait(60)\n"
               "print('search ended', search.store.search()['state'])")


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    yield from private_lab(tmp_path_factory, "sidebar")


def _kale_api(server, path: str):
    req = urllib.request.Request(f"{server.url}/kale/api/{path}",
                                 headers={"Authorization": f"token {server.token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


@pytest.mark.browser
@pytest.mark.slow
def test_sidebar_scales_stops_clusters_steers_trials_and_inserts_connect_code(lab):
    page, server = lab.page, lab.server
    # The server extension is enabled by installing the package: no extra config here.
    assert "profiles" in _kale_api(server, "profiles")

    lab.open_notebook("sidebar.ipynb", [START, SEARCH, STOP_SEARCH])
    lab.run_cell(0)
    started = lab.wait_for_output(0, "started kc-", timeout=240)
    cid = re.search(r"started (kc-[0-9a-f]+)", started).group(1)

    lab.open_sidebar()  # at the lab's default width
    card = page.locator(f".kale-cluster[data-id='{cid}']")
    card.wait_for(timeout=30_000)
    assert card.locator(".kale-workers").inner_text() == "1 worker"
    assert card.locator("a.kale-dashboard").get_attribute("href")

    # Scale from the sidebar: the card follows the cluster to 2 workers.
    card.locator(".kale-scale-input").fill("2")
    card.locator(".kale-scale-button").click()
    page.wait_for_function(
        "id => document.querySelector(`.kale-cluster[data-id='${id}'] .kale-workers`)"
        "?.textContent === '2 workers'", arg=cid, timeout=60_000)
    assert "asked for 2 workers" in page.locator(".kale-message").inner_text()

    # A running search: select it, its trials appear; stop trial 0 from its row.
    lab.run_cell(1)
    lab.wait_for_output(1, "search started")
    row = page.locator(".kale-search[data-name='sidebar-search']")
    row.wait_for(timeout=30_000)
    row.click()
    trial0 = page.locator(".kale-trial[data-number='0']")
    page.wait_for_selector(".kale-trial[data-number='0'][data-state='running']",
                           timeout=60_000)
    page.wait_for_selector(".kale-trial[data-number='1'][data-state='running']",
                           timeout=60_000)
    assert "running" in row.locator(".kale-state").inner_text()
    page.wait_for_function(
        "() => /val_acc \\d/.test(document.querySelector("
        "\".kale-search[data-name='sidebar-search'] .kale-best\")?.textContent ?? '')",
        timeout=30_000)
    # Each trial's val_acc history is a sparkline; its tooltip's report count grows.
    page.wait_for_function(
        "() => [0, 1].every(n => (document.querySelector(`.kale-trial[data-number='${n}'] "
        ".kale-spark polyline`)?.getAttribute('points') ?? '').split(' ').length >= 3)",
        timeout=30_000)
    tip = trial0.locator(".kale-spark title").text_content() or ""
    assert re.match(r"val_acc, \d+ reports: first .*, last .*, best ", tip), tip
    reports = int(tip.split()[1])
    page.wait_for_function(
        "n => parseInt(document.querySelector(\".kale-trial[data-number='0'] .kale-spark "
        "title\")?.textContent.split(' ')[1]) > n", arg=reports, timeout=30_000)
    trial0.locator(".kale-trial-stop").click()
    page.wait_for_selector(".kale-trial[data-number='0'][data-state='stopped']",
                           timeout=60_000)
    assert page.locator(".kale-message").inner_text() == "stop trial 0: done"
    trials = _kale_api(server, "searches/sidebar-search/trials")
    assert [t["state"] for t in trials] == ["stopped", "running"]
    sidebar = page.locator("#kale-sidebar")
    lab.screenshot("sidebar-search", copy_to=DOCS_SHOT, locator=sidebar)
    lab.screenshot("sidebar-full")

    # Connect code goes into a new cell of the notebook.
    cells_before = page.locator(".jp-Notebook .jp-Cell").count()
    card.locator(".kale-connect-button").click()
    page.wait_for_function(
        "n => document.querySelectorAll('.jp-Notebook .jp-Cell').length === n + 1",
        arg=cells_before, timeout=10_000)
    sources = [page.locator(".jp-Notebook .jp-Cell").nth(i).locator(".cm-content").inner_text()
               for i in range(cells_before + 1)]
    assert f'cluster = kale.connect("{cid}")' in "\n".join(sources)
    assert any(s.startswith("import kale_ext as kale\ncluster = kale.connect(") for s in sources)
    lab.screenshot("sidebar-connect-code")

    # End the search from its cell, then stop the cluster from the sidebar.
    lab.run_cell(2)
    lab.wait_for_output(2, "search ended stopped")
    card.locator(".kale-stop-button").click()
    card.wait_for(state="detached", timeout=60_000)
    assert cid not in [c["id"] for c in _kale_api(server, "clusters")]
    lab.screenshot("sidebar-stopped")


@pytest.mark.browser
@pytest.mark.slow
def test_sidebar_starts_a_cluster_from_a_profile_and_refuses_bad_input(lab):
    page, server = lab.page, lab.server
    page.goto(f"{server.url}/lab?token={server.token}")
    # The workspace restored with the lab may already show the sidebar (the test above
    # left it open), and a click on its tab would close it: look once the splash is gone.
    page.locator(SIDEBAR_TAB).wait_for(timeout=60_000)
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=60_000)
    lab.open_sidebar()
    form = page.locator("#kale-sidebar .kale-start-form")
    form.wait_for(timeout=30_000)
    # The profiles come from the server's configuration, the default one preselected.
    profiles = _kale_api(server, "profiles")
    options = form.locator(".kale-profile-select option")
    page.wait_for_function("() => document.querySelectorAll("
                           "'.kale-profile-select option').length > 0", timeout=30_000)
    names = [options.nth(i).get_attribute("value") for i in range(options.count())]
    assert names == [p["name"] for p in profiles["profiles"]]
    form.locator(".kale-profile-select").select_option("local")
    form.locator(".kale-backend-select").select_option("dask")
    message = page.locator("#kale-sidebar .kale-message")

    # A negative worker count is refused with the value, the rule and no cluster started.
    form.locator(".kale-workers-input").fill("-2")
    form.locator(".kale-start-button").click()
    page.wait_for_function(
        "() => document.querySelector('#kale-sidebar .kale-message')"
        "?.dataset.kind === 'error'", timeout=30_000)
    assert "workers=-2" in message.inner_text() and ">= 0" in message.inner_text()
    assert _kale_api(server, "clusters") == []

    form.locator(".kale-workers-input").fill("1")
    form.locator(".kale-start-button").click()
    page.wait_for_function(
        "() => /kc-[0-9a-f]+ has 1 worker$/.test(document.querySelector("
        "'#kale-sidebar .kale-message')?.textContent ?? '')", timeout=240_000)
    cid = re.search(r"kc-[0-9a-f]+", message.inner_text()).group(0)
    [listed] = _kale_api(server, "clusters")
    assert listed["id"] == cid and listed["backend"] == "dask" and listed["kind"] == "local"
    card = page.locator(f".kale-cluster[data-id='{cid}']")
    card.wait_for(timeout=30_000)
    lab.screenshot("sidebar-started-from-profile")
    assert card.locator(".kale-workers").inner_text() == "1 worker"
    card.locator(".kale-scale-input").fill("1")
    card.locator(".kale-scale-button").click()
    page.wait_for_function(
        "() => document.querySelector('#kale-sidebar .kale-message')?.dataset.kind === 'ok'"
        " && /asked for/.test(document.querySelector('#kale-sidebar .kale-message')"
        ".textContent)", timeout=60_000)
    assert message.inner_text() == f"scaling {cid}: asked for 1 worker"
    card.locator(".kale-stop-button").click()
    card.wait_for(state="detached", timeout=60_000)
    assert _kale_api(server, "clusters") == []


@pytest.mark.browser
@pytest.mark.slow
def test_a_failed_start_stays_in_the_sidebar_with_its_reason_until_dismissed(lab):
    page, server = lab.page, lab.server
    # A start refused in a cell (a queue asked of a local cluster): the cell shows the
    # error, and the sidebar keeps it after the cell's output is gone.
    lab.open_notebook("failed-start.ipynb", [
        "import kale_ext as kale\n"
        "try:\n"
        "    kale.start_cluster(kind='local', backend='dask', workers=1, queue='debug')\n"
        "except Exception as e:\n"
        "    print('refused:', type(e).__name__)"])
    lab.run_cell(0)
    lab.wait_for_output(0, "refused: ConfigError", timeout=120)
    [record] = [r for r in _kale_api(server, "failed-starts") if "queue" in r["error"]]
    lab.open_sidebar()
    card = page.locator(f"#kale-sidebar .kale-failed-start[data-id='{record['id']}']")
    card.wait_for(timeout=30_000)
    text = card.inner_text()
    assert "start of local (dask on local, 1 worker) failed at" in text, text
    assert "ConfigError" in text and "queue" in text, text
    lab.screenshot("sidebar-failed-start", locator=page.locator("#kale-sidebar"))

    # Still there after a reload of the page and a few of the sidebar's polls.
    page.reload()
    page.locator(SIDEBAR_TAB).wait_for(timeout=60_000)
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=60_000)
    lab.open_sidebar()
    card.wait_for(timeout=30_000)
    polls = page.evaluate("() => performance.getEntriesByType('resource')"
                          ".filter(e => e.name.includes('kale/api/failed-starts')).length")
    page.wait_for_function(
        "n => performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('kale/api/failed-starts')).length >= n + 2",
        arg=polls, timeout=30_000)
    assert card.is_visible()

    # Dismissed: gone from the sidebar and from the server's list.
    card.locator(".kale-dismiss-button").click()
    card.wait_for(state="detached", timeout=30_000)
    assert record["id"] not in [r["id"] for r in _kale_api(server, "failed-starts")]
    assert page.locator("#kale-sidebar .kale-message").inner_text() == \
        "dismissing a failed start: dismissed"
