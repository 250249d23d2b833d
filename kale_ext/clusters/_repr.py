"""How a cluster shows itself in a notebook: a static HTML status, or a registered view.

Clusters sit below the widgets, so they never import them: a package that can show a
cluster live registers a factory under the ``kale_ext.views`` entry-point group (kale's
own widgets register ``cluster = kale_ext.widgets:ClusterWidget``). Without one, or when
it cannot be built (no ipywidgets, no front end), the HTML status is shown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from html import escape
from importlib.metadata import entry_points
from typing import Any

from kale_ext.clusters._base import ClusterStatus

logger = logging.getLogger(__name__)


def view_factory(name: str) -> Callable[..., Any] | None:
    """Return the factory registered as ``name`` in the ``kale_ext.views`` group, or None."""
    for ep in entry_points(group="kale_ext.views", name=name):
        try:
            factory: Callable[..., Any] = ep.load()
        except ImportError as e:  # a view whose packages are missing is skipped
            logger.debug("view %s unavailable: %s", name, e)
            continue
        return factory
    return None


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
