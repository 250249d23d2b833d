"""A search whose trial reports a NaN loss, watched in the Kale sidebar in a real
JupyterLab in headless chromium: the REST replies stay parseable (non-finite numbers
are ``null``), the trial shows its non-number as "-", and the sidebar keeps working
(the other trial's numbers move on, and a trial is stopped from its row)."""

from __future__ import annotations

import json
import math
import time
import urllib.request

import pytest

from tests.browser.conftest import private_lab

START = ("import kale_ext as kale\n"
         "cluster = kale.start_cluster(kind='local', backend='dask', workers=2)\n"
         "print('started', cluster.id)")
# Trial 0 diverges: its loss is NaN from epoch 3 on (and its gradient norm infinite).
SEARCH = ("import math, time\n"
          "def train(config):\n"
          "    for epoch in range(1, 20000):\n"
          "        bad = config['x'] < 0.5 and epoch >= 3\n"
          "        kale.report(epoch=epoch, loss=math.nan if bad else 1 / epoch,\n"
          "                    gnorm=math.inf if bad else 1.0)\n"
          "        time.sleep(0.05)\n"
          "search = kale.Search(train, {'x': kale.grid([0.1, 0.9])}, metric='loss',\n"
          "                     mode='min', trials=2, max_concurrent=2, algorithm='grid',\n"
          "                     cluster=cluster, name='nan-search').start()\n"
          "print('search started')")
STOP_SEARCH = ("search.stop(); search.wait(60)\n"
               "print('search ended', search.store.search()['state'])")


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    yield from private_lab(tmp_path_factory, "nan")


def _strict_api(server, path: str):
    """GET ``kale/api/<path>`` parsed as a browser's ``JSON.parse`` would (no NaN)."""
    def refuse(word: str):
        raise AssertionError(f"bare {word} in the reply of kale/api/{path}")

    req = urllib.request.Request(f"{server.url}/kale/api/{path}",
                                 headers={"Authorization": f"token {server.token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read(), parse_constant=refuse)


@pytest.mark.browser
@pytest.mark.slow
def test_a_nan_loss_is_shown_and_the_sidebar_keeps_working(lab):
    page, server = lab.page, lab.server
    lab.start_search("nan.ipynb", [START, SEARCH, STOP_SEARCH])
    row = page.locator(".kale-search[data-name='nan-search']")
    row.wait_for(timeout=60_000)
    row.click()
    page.wait_for_selector(".kale-trial[data-number='0'][data-state='running']",
                           timeout=120_000)
    page.wait_for_selector(".kale-trial[data-number='1'][data-state='running']",
                           timeout=120_000)

    # The NaN reached the store and the REST reply carries it as null.
    def nan_stored() -> bool:
        trials = _strict_api(server, "searches/nan-search/trials")
        return any("loss" in t["last"] and t["last"]["loss"] is None for t in trials)

    deadline = time.monotonic() + 120
    while not nan_stored():
        assert time.monotonic() < deadline, _strict_api(server, "searches/nan-search/trials")
        page.wait_for_timeout(250)
    trials = _strict_api(server, "searches/nan-search/trials")
    nan_trial = next(t["number"] for t in trials if t["last"].get("loss", 0) is None)
    fine_trial = 1 - nan_trial
    assert trials[nan_trial]["last"]["gnorm"] is None
    assert math.isfinite(trials[fine_trial]["last"]["loss"])

    # The sidebar shows the non-number as "-" in the metric column ...
    cell = f".kale-trial[data-number='{nan_trial}'] td.kale-number"
    page.wait_for_function(f"() => document.querySelector(\"{cell}\")?.textContent === '-'",
                           timeout=30_000)
    # ... and keeps polling: the finite trial's loss keeps falling on screen.
    fine = f".kale-trial[data-number='{fine_trial}'] td.kale-number"
    first = page.locator(fine).first.inner_text()
    page.wait_for_function(
        f"v => {{ const t = document.querySelector(\"{fine}\")?.textContent ?? '';"
        f" return t !== v && t !== '-' && parseFloat(t) < parseFloat(v); }}",
        arg=first, timeout=60_000)
    assert "best loss" in row.locator(".kale-best").inner_text()
    assert page.locator("#kale-sidebar .kale-message[data-kind='error']").count() == 0

    # A control still works from the row of the NaN trial.
    stop = page.locator(f".kale-trial[data-number='{nan_trial}'] .kale-trial-stop")
    try:
        stop.wait_for(timeout=30_000)
    except Exception:
        lab.screenshot("sidebar-nan-loss-no-stop")
        raise AssertionError(
            f"no stop button on trial {nan_trial}: "
            f"{page.locator('#kale-sidebar .kale-trials').inner_html()[:3000]}; "
            f"{_strict_api(server, 'searches')}") from None
    stop.click()
    page.wait_for_selector(f".kale-trial[data-number='{nan_trial}'][data-state='stopped']",
                           timeout=60_000)
    assert page.locator(".kale-message").inner_text() == f"stop trial {nan_trial}: done"
    lab.screenshot("sidebar-nan-loss", locator=page.locator("#kale-sidebar"))

    lab.run_cell(2)
    lab.wait_for_output(2, "search ended stopped", timeout=120)

