"""A cluster's static HTML status: what a notebook shows when no live view can be built.

The live view is found through :mod:`kale_ext.views`; without one, or when it cannot be
built (no ipywidgets, no front end), this HTML is shown.
"""

from __future__ import annotations

from html import escape

from kale_ext.clusters._base import ClusterStatus


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n //= 1024
    return f"{n} PiB"


def status_html(s: ClusterStatus) -> str:
    """Render the status ``s`` as HTML: jobs with their states, workers, dashboard link."""
    dash = (
        f'<a href="{escape(s.dashboard)}" target="_blank">{escape(s.dashboard)}</a>'
        if s.dashboard else "none"
    )
    jobs = "".join(
        f"<tr><td>{escape(j.job_id)}</td><td>{escape(j.state)}</td><td>{escape(j.reason)}</td></tr>"
        for j in s.jobs
    )
    workers = "".join(
        f"<tr><td>{escape(w.name)}</td><td>{escape(w.host)}</td><td>{w.cores}</td>"
        f"<td>{_size(w.memory)}</td><td>{escape(w.job_id or '')}</td></tr>"
        for w in s.workers
    )
    return (
        f"<div><strong>kale cluster {escape(s.id)}</strong> "
        f"({escape(s.backend)} on {escape(s.kind)}, {escape(s.state)})<br>"
        f"address: <code>{escape(s.address)}</code> &middot; dashboard: {dash}<br>"
        f"{len(s.workers)} workers, {s.cores} cores, {_size(s.memory)}"
        + (f"<table><tr><th>job</th><th>state</th><th>reason</th></tr>{jobs}</table>"
           if jobs else "")
        + (f"<table><tr><th>worker</th><th>host</th><th>cores</th><th>memory</th><th>job</th></tr>"
           f"{workers}</table>" if workers else "")
        + (f"<br><em>{escape(s.detail)}</em>" if s.detail else "")
        + "</div>"
    )
