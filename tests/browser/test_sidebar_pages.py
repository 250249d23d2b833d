"""A search of 300 trials in the Kale sidebar, in JupyterLab in chromium: the sidebar
asks for pages (the running trials and the best ones), says how many it leaves out,
and lists more on request."""

from __future__ import annotations

import dask.config
import pytest

from kale_ext import registry
from kale_ext.store import Store
from kale_ext.trial import TrialState
from tests.browser.conftest import SIDEBAR_TAB
from tests.store.fill import fill_search

TRIALS = 300


@pytest.mark.browser
def test_a_large_search_is_listed_by_pages(lab, tmp_path):
    page, server = lab.page, lab.server
    with dask.config.set({"kale.state-dir": str(server.state)}):
        path = fill_search(tmp_path, "big-search", TRIALS, epochs=3)
    try:
        with Store.open(path, readonly=True, states=TrialState) as store:
            running = [t.number for t in store.trials(states=[int(TrialState.RUNNING)])]
            best = [t.number for t in store.trials(limit=50, best_first="max")]
        page.goto(f"{server.url}/lab?token={server.token}")
        tab = page.locator(SIDEBAR_TAB)
        tab.wait_for(timeout=60_000)
        page.wait_for_selector(".jp-LabShell", timeout=60_000)
        if tab.get_attribute("aria-selected") != "true":  # the lab may restore it open
            tab.click()
        page.locator("#kale-sidebar").wait_for(state="visible", timeout=30_000)
        page.locator(".kale-search[data-name='big-search']").click()
        left_out = page.locator(".kale-trials-left-out")
        left_out.wait_for(timeout=30_000)
        listed = len(set(running) | set(best))
        assert left_out.inner_text() == \
            f"{listed} of {TRIALS} trials: the running ones and the best"
        numbers = page.locator(".kale-trials tbody.kale-trial").evaluate_all(
            "rows => rows.map(r => Number(r.dataset.number))")
        assert numbers[:len(running)] == running  # the running ones first
        assert set(numbers) == set(running) | set(best)

        page.locator(".kale-trials-more").click()  # twice as many best ones
        page.wait_for_function(
            "n => document.querySelectorAll('.kale-trials tbody.kale-trial').length > n",
            arg=len(numbers), timeout=30_000)
        more = page.locator(".kale-trials tbody.kale-trial").count()
        assert listed < more <= len(running) + 100
    finally:
        with dask.config.set({"kale.state-dir": str(server.state)}):
            registry.remove("searches", "big-search")
