"""The notebook display of a cluster: jobs, workers, dashboard, scale and stop, live."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from kale_ext._errors import KaleError
from kale_ext.clusters import status_html
from kale_ext.widgets._bokeh import require
from kale_ext.widgets._updater import Updater

if TYPE_CHECKING:
    from kale_ext.clusters import Cluster


class ClusterWidget:
    """Status of ``cluster`` refreshed every ``interval`` seconds, with scale and stop.

    Shows the batch jobs with their queue states, the workers with cores and memory,
    and the dashboard link (the cluster's own status view, ``status_html``).
    """

    def __init__(self, cluster: Cluster, *, interval: float = 2.0) -> None:
        widgets = require("ipywidgets")
        self.cluster = cluster
        self.stopped = False
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

    def _tick(self) -> bool:
        if self.stopped:
            return False
        try:
            status = self.cluster.status()
        except Exception as e:  # unreachable scheduler: say so, keep trying
            self.message.value = f"status unavailable: {html.escape(str(e))}"
            return True
        text = status_html(status)
        if text != self.view.value:
            self.view.value = text
        if self._first:  # start the scale box at the current size
            self.workers.value = len(status.workers)
            self._first = False
        if status.state == "stopped":
            self._stopped()
        return not self.stopped

    def scale(self, n: int) -> None:
        """Ask the cluster for ``n`` workers and say so (or show the error)."""
        try:
            self.cluster.scale(int(n))
        except KaleError as e:
            self._say(f"scale to {n}: {e}", ok=False)
            return
        self._say(f"scale: asked for {n} workers", ok=True)
        self.updater.poke()

    def stop(self) -> None:
        """Stop the cluster (workers, scheduler, batch jobs)."""
        try:
            self.cluster.stop()
        except KaleError as e:
            self._say(f"stop: {e}", ok=False)
            return
        self._say(f"stopped cluster {self.cluster.id}", ok=True)
        self._stopped()

    def _stopped(self) -> None:
        self.stopped = True
        self.scale_button.disabled = self.stop_button.disabled = True

    def _say(self, text: str, *, ok: bool) -> None:
        colour = "#2b8a3e" if ok else "#c92a2a"
        self.message.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def close(self) -> None:
        self.updater.stop()
        self.widget.close()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        return f"<kale ClusterWidget {self.cluster.id}>"
