"""The notebook display of a cluster: jobs, workers, dashboard, scale and stop, live."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from kale_ext import registry
from kale_ext._errors import KaleError
from kale_ext.clusters import ClusterStatus, status_html
from kale_ext.widgets._bokeh import require
from kale_ext.widgets._updater import Updater

if TYPE_CHECKING:
    from kale_ext.clusters import Cluster

# Ticks a cluster must stay unreachable before the view says so: a stop in progress
# (its client closed, its record not yet dropped) reads "stopped" a moment later.
_UNREACHABLE_TICKS = 2


class ClusterWidget:
    """Status of ``cluster`` refreshed every ``interval`` seconds, with scale and stop.

    Shows the batch jobs with their queue states, the workers with cores and memory,
    and the dashboard link (the cluster's own status view, ``status_html``). Once the
    cluster is stopped, here or anywhere else (``cluster.stop()``, the sidebar, the
    command line), the view says "stopped", its controls are disabled and the
    updates end.
    """

    def __init__(self, cluster: Cluster, *, interval: float = 2.0) -> None:
        widgets = require("ipywidgets")
        self.cluster = cluster
        self.stopped = False
        self._unreachable = 0
        self.view = widgets.HTML()
        self.message = widgets.HTML()
        self.workers = widgets.BoundedIntText(value=1, min=0, max=100_000, description="workers",
                                              layout=widgets.Layout(width="180px"))
        self.scale_button = widgets.Button(description="Scale", icon="arrows-v",
                                           tooltip="Ask for this many workers")
        self.stop_button = widgets.Button(description="Stop cluster", icon="stop",
                                          button_style="danger",
                                          tooltip="Stop the workers and cancel the batch jobs")
        self.scale_button.on_click(lambda _b: self.scale(self.workers.value))
        self.stop_button.on_click(lambda _b: self.stop())
        self.widget = widgets.VBox([
            self.view,
            widgets.HBox([self.workers, self.scale_button, self.stop_button]),
            self.message])
        self._first = True
        self._tick()
        self.updater = Updater(self._tick, interval=interval, idle_interval=interval,
                               name=f"kale-cluster-{cluster.id}").start()
        if self.stopped:
            self.updater.stop()

    @property
    def registered(self) -> bool:
        """Whether the cluster is still in the registry (a stop, anywhere, removes it)."""
        return registry.read("clusters", self.cluster.id) is not None

    def _tick(self) -> bool:
        if self.stopped:
            return False
        if not self.registered:
            self._stopped()
            return False
        try:
            status = self.cluster.status()
        except Exception as e:  # unreachable scheduler: say so, keep trying
            self.message.value = f"status unavailable: {html.escape(str(e))}"
            return True
        if status.state == "unreachable":
            if not self.registered:
                self._stopped()
                return False
            if self._stopping_here():
                self._show_stopping()
                return True  # "stopped" once the stop has dropped the record
            self._unreachable += 1
            if self._unreachable < _UNREACHABLE_TICKS and not self._first:
                return True  # a stop may be under way: look again before saying so
        else:
            self._unreachable = 0
        self._show(status)
        if self._first:  # start the scale box at the current size
            self.workers.value = len(status.workers)
            self._first = False
        if status.state == "stopped":
            self._stopped()
        return not self.stopped

    def _stopping_here(self) -> bool:
        """Whether this process closed the cluster's client: a stop is under way here.

        A Dask cluster's stop closes its client first, then waits for the scheduler's
        daemon to exit before it drops the record; meanwhile the status reads
        unreachable. (An ipyparallel stop holds the cluster's lock, so its status waits
        for the stop's end.)
        """
        if self.cluster.backend != "dask":
            return False
        return getattr(self.cluster.client, "status", "running") in ("closing", "closed")

    def _show_stopping(self) -> None:
        r = self.cluster.record
        self.view.value = (f"<div><strong>kale cluster {html.escape(r.id)}</strong> "
                           f"({html.escape(r.backend)} on {html.escape(r.kind)}, stopping)"
                           "<br>its workers and scheduler are being stopped</div>")
        self.scale_button.disabled = self.stop_button.disabled = True
        self.workers.disabled = True

    def _show(self, status: ClusterStatus) -> None:
        text = status_html(status)
        if text != self.view.value:
            self.view.value = text

    def scale(self, n: int) -> None:
        """Ask the cluster for ``n`` workers and say so (or show the error)."""
        if self.stopped:
            self._say(f"scale: cluster {self.cluster.id} is stopped", ok=False)
            return
        try:
            self.cluster.scale(int(n))
        except KaleError as e:
            self._say(f"scale to {n}: {e}", ok=False)
            return
        self._say(f"scale: asked for {n} worker{'' if n == 1 else 's'}", ok=True)
        self.updater.poke()

    def stop(self) -> None:
        """Stop the cluster (workers, scheduler, batch jobs)."""
        if self.stopped:
            return
        try:
            self.cluster.stop()
        except KaleError as e:
            self._say(f"stop: {e}", ok=False)
            return
        self._say(f"stopped cluster {self.cluster.id}", ok=True)
        self._stopped()

    def _stopped(self) -> None:
        """Say "stopped", with no workers, and disable what no longer applies."""
        self.stopped = True
        r = self.cluster.record
        self._show(ClusterStatus(r.id, r.backend, r.kind, "stopped", r.address, None))
        self.scale_button.disabled = self.stop_button.disabled = True
        self.workers.disabled = True
        if hasattr(self, "updater"):
            self.updater.stop()

    def _say(self, text: str, *, ok: bool) -> None:
        colour = "#2b8a3e" if ok else "#c92a2a"
        self.message.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def close(self) -> None:
        """Stop updating and close the widgets (the cluster keeps running)."""
        self.updater.stop()
        self.widget.close()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        return f"<kale ClusterWidget {self.cluster.id}>"
