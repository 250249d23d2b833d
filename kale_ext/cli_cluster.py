"""``kale cluster start|list|status|scale|adapt|stop``: clusters from the command line.

Every command connects, acts and disconnects; the clusters keep running after ``kale``
exits. ``kale cluster stop --idle`` stops the clusters that have no client and no task.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from kale_ext._errors import ConfigError
from kale_ext.cli import add_json_flag, key_value, print_json, size, table, wants_json


def register_cluster_commands(sub: Any) -> None:
    """``kale cluster start|list|status|scale|adapt|stop``."""
    group = sub.add_parser("cluster", help="start, list, scale and stop clusters")
    csub = group.add_subparsers(dest="cluster_command", required=True, metavar="COMMAND")

    p = csub.add_parser("start", help="start a cluster (it keeps running after kale exits)")
    p.add_argument("kind", nargs="?", help="local, slurm, pbs, sge, lsf, or a profile name")
    p.add_argument("--backend", help="dask or ipyparallel (default: the profile's)")
    p.add_argument("-n", "--workers", type=int, help="number of workers to start")
    p.add_argument("-p", "--profile", help="site profile (see 'kale profiles')")
    for name in ("queue", "account", "walltime", "memory"):
        p.add_argument(f"--{name}", help=f"batch {name} (overrides the profile)")
    p.add_argument("--cores", type=int, help="cores per batch job")
    p.add_argument("-o", "--option", type=key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="any other profile key; VALUE is YAML")
    add_json_flag(p)
    p.set_defaults(func=_cluster_start)

    p = csub.add_parser("list", help="registered clusters with their live state")
    add_json_flag(p)
    p.set_defaults(func=_cluster_list)

    p = csub.add_parser("status", help="workers and batch jobs of a cluster")
    p.add_argument("id", help="cluster id (see 'kale cluster list')")
    add_json_flag(p)
    p.set_defaults(func=_cluster_status)

    p = csub.add_parser("stop", help="stop a cluster and cancel its jobs")
    p.add_argument("id", nargs="?", help="cluster id (see 'kale cluster list')")
    p.add_argument("--idle", action="store_true",
                   help="stop every cluster with no client and no task now (pinned ones "
                        "and clusters in use are kept)")
    add_json_flag(p)
    p.set_defaults(func=_cluster_stop)

    p = csub.add_parser("scale", help="ask for N workers")
    p.add_argument("id")
    p.add_argument("n", type=int)
    add_json_flag(p)
    p.set_defaults(func=_cluster_scale)

    p = csub.add_parser("adapt", help="scale between MIN and MAX workers with the load")
    p.add_argument("id")
    p.add_argument("minimum", type=int, metavar="MIN")
    p.add_argument("maximum", type=int, metavar="MAX")
    add_json_flag(p)
    p.set_defaults(func=_cluster_adapt)


def _workers(n: int) -> str:
    return f"{n} worker" if n == 1 else f"{n} workers"


def _minutes(seconds: float | None) -> str:
    seconds = max(0, round(seconds or 0))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min"


def _idle(s: Any) -> str:
    """Return "in use", "idle 12 min (stops in 48 min)", "idle 3 min (no timeout)" or "-"."""
    idle = s.idle or {}
    if not idle:
        return "-"
    if idle.get("idle_for") is None:
        return "in use"
    left = idle.get("left")
    return (f"idle {_minutes(idle['idle_for'])} "
            + ("(no timeout)" if left is None else f"(stops in {_minutes(left)})"))


def _status_rows(statuses: Sequence[Any]) -> str:
    rows = [(s.id, s.backend, s.kind, s.state, len(s.workers), s.cores, size(s.memory),
             ",".join(j.job_id for j in s.jobs if j.state not in ("CANCELLED", "COMPLETED",
                                                                     "GONE")) or "-",
             _idle(s), s.dashboard or "-") for s in statuses]
    return table(rows, ("ID", "BACKEND", "KIND", "STATE", "WORKERS", "CORES", "MEMORY",
                        "JOBS", "IDLE", "DASHBOARD"))


def _dashboard_note(link: str | None) -> str:
    """Say how to open a dashboard that asks for the cluster's certificate."""
    if not (link or "").startswith("https:"):
        return ""
    return ("\n  (it asks for the cluster's certificate: open it from JupyterLab's kale "
            "sidebar, or present ca.pem, cert.pem and key.pem of the cluster's folder)")


def _cluster_start(args: argparse.Namespace) -> int:
    from kale_ext.clusters import start_cluster

    overrides = dict(args.option)
    for name in ("queue", "account", "walltime", "memory", "cores"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    cluster = start_cluster(args.kind, backend=args.backend, workers=args.workers,
                            profile=args.profile, **overrides)
    try:
        status = cluster.status()
    finally:
        cluster.disconnect()
    if wants_json(args):
        print_json(status.to_dict())
    else:
        print(f"started {status.id}: {_workers(len(status.workers))} at {status.address}")
        print(f"dashboard: {status.dashboard or '-'}{_dashboard_note(status.dashboard)}")
        print(f"stop it with: kale cluster stop {status.id}")
    return 0


def _cluster_list(args: argparse.Namespace) -> int:
    from kale_ext.clusters import clusters

    statuses = clusters()
    if wants_json(args):
        print_json([s.to_dict() for s in statuses])
    elif statuses:
        print(_status_rows(statuses))
    else:
        print("no clusters; start one with: kale cluster start")
    return 0


def _with_cluster(cluster_id: str, action: Callable[[Any], Any]) -> Any:
    from kale_ext.clusters import connect

    cluster = connect(cluster_id)
    try:
        return action(cluster)
    finally:
        cluster.disconnect()


def _cluster_status(args: argparse.Namespace) -> int:
    status = _with_cluster(args.id, lambda c: c.status())
    if wants_json(args):
        print_json(status.to_dict())
        return 0
    print(_status_rows([status]) + _dashboard_note(status.dashboard))
    if status.jobs:
        print("\n" + table([(j.job_id, j.state, j.reason) for j in status.jobs],
                           ("JOB", "STATE", "REASON")))
    if status.workers:
        print("\n" + table([(w.name, w.address, w.cores, size(w.memory), w.job_id or "-")
                            for w in status.workers],
                           ("WORKER", "ADDRESS", "CORES", "MEMORY", "JOB")))
    if status.detail:
        print(f"\n{status.detail}")
    return 0


def _cluster_scale(args: argparse.Namespace) -> int:
    if args.n < 0:
        raise ConfigError(f"N must be 0 or more, but got {args.n}.")
    _with_cluster(args.id, lambda c: c.scale(args.n))
    _report(args, {"id": args.id, "requested": args.n},
            f"{args.id}: asked for {_workers(args.n)}")
    return 0


def _cluster_adapt(args: argparse.Namespace) -> int:
    _with_cluster(args.id, lambda c: c.adapt(args.minimum, args.maximum))
    _report(args, {"id": args.id, "minimum": args.minimum, "maximum": args.maximum},
            f"{args.id}: adapting between {args.minimum} and {args.maximum} workers")
    return 0


def _cluster_stop(args: argparse.Namespace) -> int:
    from kale_ext.clusters import stop

    if args.idle == (args.id is not None):
        raise ConfigError("Give a cluster id (kale cluster stop ID) or --idle (every idle "
                          "cluster), one of the two.")
    if args.id is not None:
        stop(args.id)
        _report(args, {"id": args.id, "stopped": True}, f"{args.id}: stopped")
        return 0
    return _stop_idle(args)


def _stop_idle(args: argparse.Namespace) -> int:
    """Stop the clusters that have no client and no task now; pinned ones stay."""
    from kale_ext.clusters import clusters, stop

    stopped, kept = [], []
    for s in clusters():
        idle = s.idle or {}
        if idle.get("idle_for") is not None and idle.get("timeout") is not None:
            stop(s.id)
            stopped.append(s.id)
        else:
            kept.append((s.id, _idle(s)))
    if wants_json(args):
        print_json({"stopped": stopped, "kept": [k for k, _ in kept]})
        return 0
    for cid in stopped:
        print(f"{cid}: stopped (idle)")
    for cid, why in kept:
        print(f"{cid}: kept ({why})")
    if not stopped and not kept:
        print("no clusters")
    return 0


def _report(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if wants_json(args):
        print_json(data)
    else:
        print(text)
