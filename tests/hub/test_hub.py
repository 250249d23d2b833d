"""kale behind a real JupyterHub whose servers are Slurm jobs on the test bed, in chromium.

alice and bob log in through the hub's PAM login at the same time, alice asking for the
CPU profile and bob for the GPU one; each server starts as a Slurm job of its user on a
test-bed node (partition regular or gpu) with kale's sidebar. alice starts a Slurm
cluster and a small search from a notebook, the panel streams, the sidebar's dashboard
link goes through her server (kale's dashboard proxy); bob's sidebar, REST API and
browser see none of it. Then alice's server job ends: her cluster, whose daemon is a
Slurm job of its own (deploy/jupyterhub/kale-daemon-job), keeps running with its worker
and is found again by her next server's kale API. A search started just before the end
goes on without the server: its driver, started from the kernel, runs in a process of
its own, a Slurm job too; from the login node alice attaches to it and it completes.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.browser.conftest import NOTEBOOK, Lab
from tests.hub.conftest import as_user, fetch, password, squeue, write_notebook

START = ("import kale_ext as kale\n"
         "cluster = kale.start_cluster('slurm', workers=1, walltime='00:20:00', memory='1GiB')\n"
         "print('started', cluster.id, cluster.record.dashboard)")
SEARCH = ("import time\n"
          "def train(config):\n"
          "    for epoch in range(1, 60):\n"
          "        kale.report(epoch=epoch, val_acc=config['x'] * (1 - 1 / epoch))\n"
          "        time.sleep(0.1)\n"
          "search = kale.Search(train, {'x': kale.uniform(0, 1)}, metric='val_acc',\n"
          "                     trials=3, cluster=cluster, name='hub-search').start()\n"
          "panel = search.panel()\n"
          "panel")
WAIT = ("search.wait(180)\n"
        "print('ended', search.store.search()['state'], panel.updater.error)")
OUTLIVE = ("def slow(config):\n"
           "    for epoch in range(1, 41):\n"
           "        kale.report(epoch=epoch, val_acc=config['x'] * (1 - 1 / epoch))\n"
           "        time.sleep(0.5)\n"
           "outlives = kale.Search(slow, {'x': kale.uniform(0, 1)}, metric='val_acc',\n"
           "                       trials=2, cluster=cluster, name='hub-outlives').start()\n"
           "print('detached', type(outlives._driver).__name__)")


class HubLab(Lab):
    """:class:`Lab` on a user's server behind the hub."""

    def __init__(self, hub: Any, page: Any, user: str) -> None:
        super().__init__(SimpleNamespace(url=f"{hub.url}/user/{user}", token="",
                                         root=Path("/nonexistent")), page)
        self.user = user

    def open_notebook(self, name: str, cells: list[str]) -> None:
        write_notebook(self.user, name, cells)
        self.page.goto(f"{self.server.url}/lab/tree/{name}")
        self.page.wait_for_selector(f"{NOTEBOOK} .jp-Cell", timeout=60_000)
        self.accept_dialog()
        no_news = self.page.get_by_role("button", name="No", exact=True)
        if no_news.count():
            no_news.first.click()
        self.wait_idle(timeout=60)


def _login_and_spawn(page: Any, hub: Any, user: str, profile: str = "cpu") -> None:
    """Log in through the hub's form and ask for a server of ``profile`` on the form."""
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password(user))
    page.click("#login_submit")
    page.wait_for_url(re.compile(r".*/hub/spawn.*"), timeout=30_000)
    page.select_option("select[name=profile]", profile)
    page.locator("#spawn_form [type=submit]").click()


def _wait_lab(page: Any, hub: Any, user: str) -> None:
    """Wait for the user's JupyterLab with kale's sidebar open."""
    page.wait_for_url(re.compile(rf".*/user/{user}/lab.*"), timeout=240_000)
    page.locator("li.lm-TabBar-tab[data-id='kale-sidebar']").wait_for(timeout=90_000)
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=60_000)
    if not page.locator("#kale-sidebar").is_visible():
        page.click("li.lm-TabBar-tab[data-id='kale-sidebar']")
    page.locator("#kale-sidebar").wait_for(state="visible")


def _server_job(user: str, env: dict[str, str]) -> dict[str, str]:
    jobs = [j for j in squeue(user, env) if j["name"] == f"jupyterhub-{user}"]
    assert len(jobs) == 1, f"{user}'s server jobs: {squeue(user, env)}"
    return jobs[0]


def _summary(lab: Lab) -> str:
    return str(lab.cell(1).locator(".widget-html-content").nth(1).inner_text())


def _kale_api(page: Any, hub: Any, user: str, path: str) -> Any:
    status, body = fetch(page, f"{hub.url}/user/{user}/kale/api/{path}")
    assert status == 200, f"{user}'s kale API {path}: {status} {body[:300]}"
    return json.loads(body)


def _cluster_ids(reply: Any) -> list[str]:
    items = reply.get("clusters", reply) if isinstance(reply, dict) else reply
    return [c["id"] for c in items]


@pytest.mark.browser
@pytest.mark.testbed
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_users_on_a_batch_hub_and_what_survives_the_server_job(hub, browser):
    env, t0, marks = hub.env, time.monotonic(), {}
    ctx_a = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx_b = browser.new_context(viewport={"width": 1400, "height": 1000})
    alice, bob = ctx_a.new_page(), ctx_b.new_page()
    lab = HubLab(hub, alice, "alice")
    try:
        # Both log in and ask for a server at the same time.
        _login_and_spawn(alice, hub, "alice")
        _login_and_spawn(bob, hub, "bob", profile="gpu")
        _wait_lab(alice, hub, "alice")
        marks["alice's lab"] = time.monotonic() - t0
        job_a = _server_job("alice", env)
        assert job_a["state"] == "RUNNING" and job_a["node"].startswith("node"), job_a
        assert job_a["partition"] == "regular", job_a
        _wait_lab(bob, hub, "bob")
        marks["bob's lab"] = time.monotonic() - t0
        job_b = _server_job("bob", env)
        assert job_b["state"] == "RUNNING" and job_b["partition"] == "gpu", job_b

        # alice: a Slurm cluster and a search from a notebook; the panel streams.
        lab.open_notebook("hub-alice.ipynb", [START, SEARCH, WAIT, OUTLIVE])
        lab.run_cell(0)
        started = lab.wait_for_output(0, "started kc-", timeout=180)
        cid, dashboard = re.search(r"started (kc-[0-9a-f]+) (\S+)", started).groups()
        marks["cluster"] = time.monotonic() - t0
        # The dashboard listens on the node's address and asks for the cluster's certificate
        assert re.fullmatch(r"https://10\.251\.0\.\d+:\d+/status", dashboard), dashboard
        lab.run_cell(1)
        lab.cell(1).locator(".datagrid-container").first.wait_for(timeout=90_000)
        alice.wait_for_function(
            "() => [...document.querySelectorAll('.widget-html-content')]"
            ".some(e => e.textContent.includes('running'))", timeout=90_000)
        first = _summary(lab)
        alice.wait_for_function(
            "([sel, before]) => { const e = document.querySelectorAll(sel)[1];"
            " return e && e.textContent !== before; }",
            arg=[".jp-Cell:nth-child(2) .widget-html-content", first], timeout=30_000)

        # Her sidebar lists the cluster, whose dashboard link goes through her server.
        card = alice.locator(f".kale-cluster[data-id='{cid}']")
        card.wait_for(timeout=30_000)
        href = card.locator("a.kale-dashboard").get_attribute("href")
        assert href == f"{hub.url}/user/alice/kale/clusters/{cid}/dashboard/status", href
        status, body = fetch(alice, href)
        assert status == 200 and "Dask" in body, (status, body[:300])
        alice.locator(".kale-search[data-name='hub-search']").wait_for(state="attached",
                                                                      timeout=30_000)

        # bob, logged in at the same time, sees only his own: nothing.
        bob.locator("#kale-sidebar .kale-start-form").wait_for(timeout=30_000)
        assert _cluster_ids(_kale_api(bob, hub, "bob", "clusters")) == []
        assert bob.locator(".kale-cluster").count() == 0
        assert bob.locator(".kale-search").count() == 0
        for url in (href, f"{hub.url}/user/alice/kale/api/clusters",
                    f"{hub.url}/user/alice/lab"):
            status, body = fetch(bob, url)
            assert status in (302, 403), (url, status)
            assert cid not in body and "Dask" not in body
            r = bob.request.get(url, fail_on_status_code=False)  # redirects followed
            assert r.status == 403, (url, r.status)

        lab.run_cell(2)
        ended = lab.wait_for_output(2, "ended", timeout=240)
        assert "ended completed None" in ended, ended
        marks["search"] = time.monotonic() - t0
        lab.screenshot("hub/alice-lab")
        lab.run_cell(3)
        assert "detached DriverProcess" in lab.wait_for_output(3, "detached", timeout=120)

        # The server job ends (stopped from the hub's home page, batchspawner cancels it).
        alice.goto(f"{hub.url}/hub/home")
        alice.locator("#stop").click()
        deadline = time.monotonic() + 120
        while any(j["name"] == "jupyterhub-alice" for j in squeue("alice", env)):
            assert time.monotonic() < deadline, squeue("alice", env)
            time.sleep(0.5)
        marks["server job ended"] = time.monotonic() - t0
        # What survives: the cluster's daemon job and worker job, and the cluster answers.
        jobs = {j["name"]: j for j in squeue("alice", env)}
        assert jobs.get("kale-daemon", {}).get("state") == "RUNNING", jobs
        out = as_user("alice", "import kale_ext as kale\n"
                               "[s] = kale.clusters()\n"
                               "print(s.id, s.state, s.workers and len(s.workers))\n"
                               "r = {s['name']: s for s in kale.searches()}\n"
                               "print('hub-search', r['hub-search']['trials'])", env)
        assert f"{cid} running 1" in out, out
        assert "hub-search" in out and "'completed': 3" in out, out
        out = as_user("alice", "import kale_ext as kale\n"
                               "s = kale.search('hub-outlives')\n"
                               "print('alive', s.running)\n"
                               "s.wait(300)\n"
                               "print('outlived', s.summary().counts)", env, timeout=330)
        assert "alive True" in out and "'completed': 2" in out, out
        marks["search outlived the server"] = time.monotonic() - t0

        # Her next server (a new Slurm job) finds the cluster again in the sidebar.
        alice.goto(f"{hub.url}/hub/spawn")
        alice.select_option("select[name=profile]", "cpu")
        alice.locator("#spawn_form [type=submit]").click()
        # The server's kale API answers as soon as the lab's page is served.
        alice.wait_for_url(re.compile(r".*/user/alice/lab.*"), timeout=240_000,
                           wait_until="commit")
        assert _server_job("alice", env)["id"] != job_a["id"]
        assert _cluster_ids(_kale_api(alice, hub, "alice", "clusters")) == [cid]
        marks["found again"] = time.monotonic() - t0
    except BaseException:
        for name, page in (("alice", alice), ("bob", bob)):
            Lab(SimpleNamespace(), page).screenshot(f"hub/{name}-failure")
        raise
    finally:
        print("hub timings (s from the start):",
              ", ".join(f"{k} {v:.0f}" for k, v in marks.items()))
        ctx_a.close()
        ctx_b.close()
