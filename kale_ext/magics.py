"""IPython magics for clusters and searches.

After ``%load_ext kale_ext``:

    %kale start slurm -n 8 -p perlmutter-gpu      # kind, workers, profile, backend, key=value
    %kale connect [ID]                            # reconnect (the newest cluster by default)
    %kale status                                  # the active cluster's workers and jobs
    %kale stop [ID]                               # stop the active cluster (or ID)
    %kale searches                                # every search with state, progress, best

    %%kale run                                    # run the cell on every worker
    import socket; print(socket.gethostname())

``%%kale run`` is what ``%%px`` was to ipyparallel notebooks: the cell runs once on
every worker of the active cluster, each worker keeping its own namespace between
cells, and each worker's output shows as it comes, under the worker's name (it travels
over the authenticated metric channel). The active cluster is also bound to
``kale_cluster`` in the notebook's namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import queue
import shlex
import sys
import time
import traceback
from typing import Any

import yaml
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from kale_ext._errors import KaleError

# Each worker's namespace for %%kale run cells; lives in the worker process.
_WORKER_NAMESPACE: dict[str, Any] = {}


class _Streamed(io.TextIOBase):
    """A stdout or stderr that sends each line, as it is written, to the kernel."""

    def __init__(self, client: Any, worker: str, stream: str) -> None:
        self.client, self.worker, self.stream = client, worker, stream
        self.partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        if lines:
            self._send("".join(f"{line}\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        if self.partial:
            self._send(self.partial)
            self.partial = ""

    def _send(self, text: str) -> None:
        self.client.send("report", {"worker": self.worker, "stream": self.stream,
                                    "text": text}, block=False)


def run_cell_source(source: str, address: str | None = None, key: bytes | None = None,
                    worker: str = "", stream: int = 0) -> dict[str, Any]:
    """Execute ``source`` in this process's worker namespace; capture or stream its output.

    Runs on a worker. With the kernel's channel ``address`` and ``key``, every line the
    cell prints goes to the kernel at once, named ``worker`` (as channel stream
    ``stream``); without, the output is captured. Returns ``{"stdout", "stderr",
    "error"}`` (the captured output, empty when streamed; ``error`` the traceback or None).
    """
    client = None
    if address is not None and key is not None:
        from kale_ext.channel import ChannelClient

        client = ChannelClient(address, key, trial=stream)
        out: io.TextIOBase = _Streamed(client, worker, "stdout")
        err: io.TextIOBase = _Streamed(client, worker, "stderr")
    else:
        out, err = io.StringIO(), io.StringIO()
    error = None
    _WORKER_NAMESPACE.setdefault("__name__", "__kale_worker__")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                exec(compile(source, "<kale cell>", "exec"), _WORKER_NAMESPACE)
            except BaseException:  # the cell's own error, reported per worker
                error = traceback.format_exc()
    finally:
        out.flush()
        err.flush()
        if client is not None:
            client.close(timeout=30)  # the kernel has every line before the task ends
    if client is not None:
        return {"stdout": "", "stderr": "", "error": error}
    return {"stdout": out.getvalue(), "stderr": err.getvalue(),  # type: ignore[attr-defined]
            "error": error}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit the kernel
        raise UsageError(f"{message}\n\n{self.format_usage()}")


def _parser() -> _Parser:
    parser = _Parser(prog="%kale", add_help=False,
                     description="Clusters and searches from a notebook.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    start = sub.add_parser("start", add_help=False, help="start a cluster and make it active")
    start.add_argument("kind", nargs="?", help="local, slurm, pbs, sge, lsf, or a profile name")
    start.add_argument("-n", "--workers", type=int, help="number of workers")
    start.add_argument("-p", "--profile", help="site profile (see 'kale profiles')")
    start.add_argument("-b", "--backend", help="dask or ipyparallel")
    start.add_argument("options", nargs="*", metavar="KEY=VALUE",
                       help="any profile key, e.g. queue=debug walltime=00:30:00")
    for name, text in (("connect", "reconnect to a cluster and make it active"),
                       ("stop", "stop the active cluster (or ID)"),
                       ("status", "workers and jobs of the active cluster (or ID)")):
        p = sub.add_parser(name, add_help=False, help=text)
        p.add_argument("id", nargs="?", help="cluster id (see 'kale cluster list')")
    sub.add_parser("searches", add_help=False, help="every search: state, progress, best")
    sub.add_parser("help", add_help=False, help="this message")
    return parser


def _options(items: list[str]) -> dict[str, Any]:
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{item!r} is not KEY=VALUE; for example queue=debug or cores=4.")
        options[key.replace("-", "_")] = yaml.safe_load(value)  # numbers, lists typed
    return options


@magics_class
class KaleMagics(Magics):
    """``%kale ...`` line magics and the ``%%kale run`` cell magic."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.cluster: Any = None

    @line_cell_magic
    def kale(self, line: str, cell: str | None = None) -> Any:
        """Clusters and searches from a notebook; ``%kale help`` lists the commands."""
        if cell is not None:
            return self._cell(line, cell)
        args = _parser().parse_args(shlex.split(line))
        if args.command in (None, "help"):
            print(_parser().format_help())
            print(__doc__)
            return None
        try:
            return getattr(self, f"_{args.command}")(args)
        except KaleError as e:  # a message for the user, not a traceback into kale
            raise UsageError(str(e)) from e

    # -- line commands -------------------------------------------------------------------

    def _start(self, args: argparse.Namespace) -> Any:
        from kale_ext.clusters import start_cluster

        cluster = start_cluster(args.kind, backend=args.backend, workers=args.workers,
                                profile=args.profile, **_options(args.options))
        self._activate(cluster)
        print(f"started {cluster.id}; it is kale_cluster in this notebook. "
              f"Stop it with %kale stop")
        return None

    def _connect(self, args: argparse.Namespace) -> Any:
        from kale_ext.clusters import connect

        self._activate(connect(args.id))
        print(f"connected to {self.cluster.id}; it is kale_cluster in this notebook")
        return None

    def _status(self, args: argparse.Namespace) -> Any:
        from IPython.display import display

        from kale_ext.clusters import status_html

        cluster = self._target(args.id)
        status = cluster.status()
        display({"text/plain": status_text(status), "text/html": status_html(status)},
                raw=True)
        return None

    def _stop(self, args: argparse.Namespace) -> Any:
        from kale_ext.clusters import stop

        if args.id is None or (self.cluster is not None and args.id == self.cluster.id):
            cluster = self._target(None)
            cluster.stop()
            self.cluster = None
            self._namespace().pop("kale_cluster", None)
            print(f"stopped {cluster.id}")
        else:
            stop(args.id)
            print(f"stopped {args.id}")
        return None

    def _searches(self, args: argparse.Namespace) -> Any:
        import pandas as pd

        from kale_ext.server import KaleManager

        rows = [{"name": s["name"], "state": s["state"], "alive": s["alive"],
                 "trials": s["trials"], "planned": s["planned"], "metric": s["metric"],
                 "best": None if s["best"] is None else s["best"]["value"],
                 "best_trial": None if s["best"] is None else s["best"]["trial"],
                 "cluster": s["cluster"]} for s in KaleManager().searches()]
        if not rows:
            print("no searches; start one with kale.Search(...).start()")
            return None
        return pd.DataFrame(rows)

    # -- %%kale run ----------------------------------------------------------------------

    def _cell(self, line: str, cell: str) -> None:
        words = shlex.split(line)
        if words[:1] != ["run"] or len(words) > 1:
            raise UsageError("The cell magic is '%%kale run' (the cell runs on every worker "
                             f"of the active cluster), but got '%%kale {line}'.")
        cluster = self._target(None)
        try:
            results = _run_streaming(cluster, cell)
        except KaleError as e:
            raise UsageError(str(e)) from e
        if not results:
            raise UsageError(f"Cluster {cluster.id} has no workers; scale it up first.")
        failed = []
        for name in sorted(results):
            result = results[name]
            if result["error"]:
                failed.append(name)
                print(f"[{name}] error:\n{result['error']}", file=sys.stderr)
        if failed:
            raise UsageError(f"The cell failed on {len(failed)} of {len(results)} workers: "
                             f"{', '.join(failed)} (tracebacks above).")

    # -- helpers -------------------------------------------------------------------------

    def _activate(self, cluster: Any) -> None:
        self.cluster = cluster
        self._namespace()["kale_cluster"] = cluster

    def _namespace(self) -> dict[str, Any]:
        if self.shell is None:
            raise UsageError("The %kale magics need an IPython shell.")
        namespace: dict[str, Any] = self.shell.user_ns
        return namespace

    def _target(self, cluster_id: str | None) -> Any:
        if cluster_id is not None and (self.cluster is None or cluster_id != self.cluster.id):
            from kale_ext.clusters import connect

            self._activate(connect(cluster_id))
        if self.cluster is None:
            raise UsageError("No active cluster: %kale start [KIND] -n N, or %kale connect ID.")
        return self.cluster


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def status_text(status: Any) -> str:
    """Return ``%kale status`` in one line, numbers and nouns agreeing ("1 core").

    Parameters
    ----------
    status
        A :class:`kale_ext.clusters.ClusterStatus`.
    """
    return (f"{status.id}: {status.backend} on {status.kind}, {status.state}, "
            f"{_count(len(status.workers), 'worker')}, {_count(status.cores, 'core')}; "
            f"dashboard {status.dashboard or '-'}")


def _run_streaming(cluster: Any, cell: str) -> dict[str, dict[str, Any]]:
    """Run ``cell`` on every worker of ``cluster``; return the results by worker.

    Each worker's lines are printed as they come, a ``[worker]`` line before each
    worker's turn.

    Printing happens on the kernel's own thread, so the output lands in the cell.
    """
    from kale_ext.channel import ChannelServer, new_key

    lines: queue.Queue[tuple[str, str, str]] = queue.Queue()

    def handler(batch: list[Any]) -> None:
        for m in batch:
            if m.kind == "report":
                lines.put((str(m.data["worker"]), str(m.data["stream"]), str(m.data["text"])))

    key = new_key()
    slots = cluster.slots()
    with ChannelServer(key, handler, host=cluster.channel_host()) as server:
        futures = {slot.name: cluster.submit_to(
            slot, run_cell_source, cell, server.address, key, slot.name, index,
            key=f"kale-cell-{slot.name}-{time.monotonic_ns()}")
            for index, slot in enumerate(slots)}
        shown: list[str] = []

        def show(block: float) -> None:
            try:
                item = lines.get(timeout=block)
            except queue.Empty:
                return
            while True:
                worker, stream, text = item
                if not shown or shown[-1] != worker:
                    print(f"[{worker}]", flush=True)
                shown.append(worker)
                print(text, end="", file=sys.stderr if stream == "stderr" else sys.stdout,
                      flush=True)
                try:
                    item = lines.get_nowait()
                except queue.Empty:
                    return

        while not all(f.done() for f in futures.values()):
            show(0.1)
        show(0)
    results = {}
    for name, future in futures.items():
        try:
            results[name] = future.result()
        except Exception as e:  # the worker was lost, or the task could not run
            results[name] = {"stdout": "", "stderr": "", "error": f"{type(e).__name__}: {e}"}
        if name not in shown:
            print(f"[{name}] (no output)")
    return results


def load_ipython_extension(ipython: Any) -> None:
    """Register the ``%kale`` magics with ``ipython``."""
    ipython.register_magics(KaleMagics)
