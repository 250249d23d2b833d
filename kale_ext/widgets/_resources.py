"""Per-worker CPU, memory and GPU, sampled on the workers and plotted live."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kale_ext.widgets._bokeh import bokeh_widget, palette, require
from kale_ext.widgets._sampler import sample_resources

if TYPE_CHECKING:
    from kale_ext.clusters import Cluster

logger = logging.getLogger(__name__)

_KEEP = 900  # samples kept per worker in the plot (30 min at 2 s)


class ResourceMonitor:
    """Samples every worker of ``cluster`` every ``interval`` seconds on its own thread.

    ``samples`` maps worker name to its latest sample; ``on_sample`` callbacks get each
    round ``{worker: sample}``.
    """

    def __init__(self, cluster: Cluster, interval: float = 2.0,
                 sampler: Callable[[], dict[str, Any]] = sample_resources) -> None:
        self.cluster, self.interval, self.sampler = cluster, interval, sampler
        self.samples: dict[str, dict[str, Any]] = {}
        self.error = ""
        self.callbacks: list[Callable[[dict[str, dict[str, Any]]], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_sample(self, callback: Callable[[dict[str, dict[str, Any]]], None]) -> None:
        self.callbacks.append(callback)

    def sample(self) -> dict[str, dict[str, Any]]:
        """Sample every worker once, now."""
        try:
            samples = {str(k): v for k, v in self.cluster.run_on_workers(self.sampler).items()
                       if isinstance(v, dict)}
            self.error = ""
        except Exception as e:  # a cluster scaling or stopping: say so, keep sampling
            self.error = f"could not sample the workers: {type(e).__name__}: {e}"
            return {}
        self.samples = samples
        for callback in self.callbacks:
            callback(samples)
        return samples

    def start(self) -> ResourceMonitor:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="kale-resources",
                                            daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # a broken view must not end the sampling
                logger.exception("resource sample could not be shown")
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        self._stop.set()


class ResourcesView:
    """Live plots of CPU and memory (and GPU when present) per worker.

    Also a table of which trials run where.
    """

    def __init__(self, *, height: int = 220) -> None:
        widgets = require("ipywidgets")
        require("bokeh")
        from bokeh.models import DataRange1d, HoverTool, Range1d
        from bokeh.plotting import figure

        self.lock = threading.RLock()
        self.sources: dict[str, Any] = {}
        self.trials_by_worker: dict[str, list[int]] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        # Each worker's own process (where its trials run), not its host: workers on
        # one host would draw the same host-wide line.
        self.cpu = figure(height=height, sizing_mode="stretch_width", x_axis_type="datetime",
                          title="CPU % of a core (solid) and memory % of the host (dashed), "
                                "per worker process",
                          y_range=DataRange1d(start=0), tools="pan,box_zoom,reset")
        self.gpu = figure(height=height, sizing_mode="stretch_width", x_axis_type="datetime",
                          title="GPU utilisation % (solid) and memory % (dashed)",
                          y_range=Range1d(start=0, end=105), tools="pan,box_zoom,reset",
                          visible=False)
        for fig in (self.cpu, self.gpu):
            fig.add_tools(HoverTool(tooltips=[("worker", "@worker"), ("value", "$y{0.0}")]))
        from bokeh.layouts import column

        self.plot = bokeh_widget(column(self.cpu, self.gpu, sizing_mode="stretch_width"))
        self.table = widgets.HTML()
        self.message = widgets.HTML()
        self.widget = widgets.VBox([self.table, self.plot, self.message])

    def show(self, samples: dict[str, dict[str, Any]]) -> None:
        """Append one round of samples (from :class:`ResourceMonitor`)."""
        with self.lock:
            self.latest = samples
            for worker, s in sorted(samples.items()):
                gpus = s.get("gpus") or []
                row = {"t": [s["time"] * 1000.0], "cpu": [_process_cpu(s)],
                       "memory": [_process_memory(s)],
                       "gpu": [max((g["util"] for g in gpus), default=float("nan"))],
                       "gpu_memory": [max((100.0 * g["memory_used"] / g["memory_total"]
                                           for g in gpus if g["memory_total"]),
                                          default=float("nan"))],
                       "worker": [worker]}
                source = self.sources.get(worker)
                if source is None:
                    source = self.sources[worker] = self._add_worker(worker, row)
                else:
                    source.stream(row, rollover=_KEEP)
                if gpus and not self.gpu.visible:
                    self.gpu.visible = True
            self._render_table()

    def set_trials(self, trials_by_worker: dict[str, list[int]]) -> None:
        """Which trials run on which worker (names as the trials report them)."""
        with self.lock:
            if trials_by_worker != self.trials_by_worker:
                self.trials_by_worker = trials_by_worker
                self._render_table()

    def _add_worker(self, worker: str, row: dict[str, list[Any]]) -> Any:
        from bokeh.models import ColumnDataSource

        source = ColumnDataSource(row)
        colour = palette(len(self.sources))
        self.cpu.line("t", "cpu", source=source, line_color=colour, legend_label=worker)
        self.cpu.line("t", "memory", source=source, line_color=colour, line_dash="dashed")
        self.gpu.line("t", "gpu", source=source, line_color=colour, legend_label=worker)
        self.gpu.line("t", "gpu_memory", source=source, line_color=colour, line_dash="dashed")
        return source

    def _render_table(self) -> None:
        import html

        rows = []
        for worker, s in sorted(self.latest.items()):
            trials = self.trials_by_worker.get(worker, []) or \
                self.trials_by_worker.get(str(s.get("host")), [])
            gpus = ", ".join(f"{g['name']} {g['util']:.0f}%" for g in s.get("gpus") or []) or "-"
            if s.get("bound_gpus"):  # the GPUs this worker's trials run on
                gpus = f"GPU {','.join(s['bound_gpus'])}: {gpus}"
            cpu = _process_cpu(s)
            rows.append(
                f"<tr><td>{html.escape(worker)}</td><td>{html.escape(str(s.get('host')))}</td>"
                f"<td>{cpu:.0f}%</td><td>{s['cpu']:.0f}% of {s.get('cpus')} "
                f"core{'' if s.get('cpus') == 1 else 's'}</td>"
                f"<td>{s['rss'] / 2**20:.0f} MiB ({_process_memory(s):.1f}%)</td>"
                f"<td>{html.escape(gpus)}</td>"
                f"<td>{', '.join(map(str, sorted(trials))) or '-'}</td>"
                f"<td>{_trial_cpu(trials, cpu)}</td></tr>")
        self.table.value = (
            "<table><tr><th>worker</th><th>host</th><th>worker CPU</th><th>host CPU</th>"
            "<th>worker memory</th><th>GPU</th><th>running trials</th><th>trial CPU</th>"
            "</tr>" + "".join(rows) + "</table>")


def _process_cpu(sample: dict[str, Any]) -> float:
    """Return the worker process's CPU, in % of one core (the host's when a sample lacks it)."""
    return float(sample.get("process_cpu", sample["cpu"]))


def _process_memory(sample: dict[str, Any]) -> float:
    """Return the worker process's resident memory in % of its host's."""
    total = sample.get("memory_total") or 0
    return 100.0 * sample["rss"] / total if total else float(sample["memory"])


def _trial_cpu(trials: list[int], cpu: float) -> str:
    """Return the CPU a worker's running trials use: its process's ("95%", "120% shared")."""
    if not trials:
        return "-"
    return f"{cpu:.0f}%" if len(trials) == 1 else f"{cpu:.0f}% shared"
