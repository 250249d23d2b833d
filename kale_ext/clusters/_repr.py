"""A cluster's static HTML status: what a notebook shows when no live view can be built.

The live view is found through :mod:`kale_ext.views`; without one, or when it cannot be
built (no ipywidgets, no front end), this HTML is shown.
"""

from __future__ import annotations

import os
from html import escape
from urllib.parse import quote, urlsplit

from kale_ext.clusters._base import ClusterStatus

# Set by kale's Jupyter server extension for the kernels it starts: its base URL.
SERVER_BASE_URL = "KALE_SERVER_BASE_URL"


def dashboard_href(s: ClusterStatus) -> str | None:
    """Return where a notebook opens the dashboard of ``s``: through its Jupyter server.

    Inside a server with kale's extension the dashboard is proxied at
    ``<base_url>kale/clusters/<id>/dashboard/<page>`` (the server holds the certificate
    the dashboard asks for); elsewhere its direct link.
    """
    base = os.environ.get(SERVER_BASE_URL)
    if not s.dashboard or not base:
        return s.dashboard
    page = urlsplit(s.dashboard).path.lstrip("/") or "status"
    return f"{base.rstrip('/')}/kale/clusters/{quote(s.id, safe='')}/dashboard/{page}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n //= 1024
    return f"{n} PiB"


def plural(n: int, word: str) -> str:
    """Return "1 worker", "2 workers": ``n`` and ``word``, plural unless ``n`` is 1."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def duration(seconds: float) -> str:
    """Return ``seconds`` as people read a wait: "40 s", "12 min", "1 h 05 min"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def idle_text(idle: dict[str, float | None] | None) -> str:
    """Say how long until an idle cluster stops itself ("" when the backend keeps no clock)."""
    if not idle:
        return ""
    timeout, idle_for, left = idle.get("timeout"), idle.get("idle_for"), idle.get("left")
    if timeout is None:
        return (f"idle for {duration(idle_for)}; " if idle_for is not None else "") + \
            "no idle timeout"
    if idle_for is None or left is None:
        return f"in use; stops after {duration(timeout)} with no client and no task"
    return f"idle for {duration(idle_for)}: stops in {duration(left)} unless used"


# Job states in which the batch system's reason column lists the job's nodes.
_RUNNING = frozenset({"RUNNING", "COMPLETING", "R", "r", "RUN", "E"})


def status_html(s: ClusterStatus) -> str:
    """Render the status ``s`` as HTML: jobs with their states, workers, dashboard link."""
    head = (f"<div><strong>kale cluster {escape(s.id)}</strong> "
            f"({escape(s.backend)} on {escape(s.kind)}, {escape(s.state)})<br>")
    if s.state == "stopped":
        return head + "its workers and scheduler are gone</div>"
    href = dashboard_href(s)
    dash = f'<a href="{escape(href)}" target="_blank">{escape(href)}</a>' if href else "none"
    jobs = "".join(
        f"<tr><td>{escape(j.job_id)}</td><td>{escape(j.state)}</td>"
        + (f"<td>{escape(j.reason)}</td><td></td>" if j.state in _RUNNING
           else f"<td></td><td>{escape(j.reason)}</td>") + "</tr>"
        for j in s.jobs
    )
    workers = "".join(
        f"<tr><td>{escape(w.name)}</td><td>{escape(w.host)}</td><td>{w.cores}</td>"
        f"<td>{_size(w.memory)}</td><td>{escape(w.job_id or '')}</td></tr>"
        for w in s.workers
    )
    return (
        head
        + f"address: <code>{escape(s.address)}</code> &middot; dashboard: {dash}<br>"
        f"{plural(len(s.workers), 'worker')}, {plural(s.cores, 'core')}, {_size(s.memory)}"
        + (f"<table><tr><th>job</th><th>state</th><th>nodes</th><th>reason</th></tr>"
           f"{jobs}</table>" if jobs else "")
        + (f"<table><tr><th>worker</th><th>host</th><th>cores</th><th>memory</th><th>job</th></tr>"
           f"{workers}</table>" if workers else "")
        + (f"<br>{escape(idle_text(s.idle))}" if s.idle else "")
        + (f"<br><em>{escape(s.detail)}</em>" if s.detail else "")
        + "</div>"
    )
