"""``kale search list|show|stop|pause|resume|restart|export`` and ``kale kernels install|list``.

Search commands read the stores through the same manager the Jupyter server uses, and
steer a running search over its authenticated channel.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

from kale_ext.cli import add_json_flag, key_value, print_json, table, wants_json


def _manager() -> Any:
    from kale_ext.server import KaleManager

    return KaleManager()


def _call(fn: Any, *args: Any) -> Any:
    """Call ``fn(*args)``; manager refusals are errors for the command line too."""
    from kale_ext._errors import KaleError
    from kale_ext.server import ApiError

    try:
        return fn(*args)
    except ApiError as e:
        raise KaleError(str(e)) from e


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        return f"{value:.4g}"
    return str(value)


def _params(params: dict[str, Any], prefix: str = "") -> str:
    """``lr=0.001, opt.name=SGD``: nested keys dotted, as in the sidebar."""
    parts = []
    for key, value in params.items():
        if isinstance(value, dict):
            parts.append(_params(value, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}={_number(value)}")
    return ", ".join(p for p in parts if p)


# -- kale search -----------------------------------------------------------------------
def register_search_commands(sub: Any) -> None:
    """``kale search list|show|stop|pause|resume|restart|export``."""
    group = sub.add_parser("search", help="list, inspect and steer hyperparameter searches")
    ssub = group.add_subparsers(dest="search_command", required=True, metavar="COMMAND")

    p = ssub.add_parser("list", help="every search with its state, progress and best trial")
    add_json_flag(p)
    p.set_defaults(func=_search_list)

    p = ssub.add_parser("show", help="a search's definition and its trials")
    p.add_argument("name", help="a search's name (kale search list), or its store's path")
    p.add_argument("-n", "--limit", type=int, default=50,
                   help="trials to list (default 50; 0: all)")
    p.add_argument("--best", action="store_true", help="list the best trials first")
    add_json_flag(p)
    p.set_defaults(func=_search_show)

    for action, text in (("stop", "stop a search, or one trial with --trial"),
                         ("pause", "pause a search, or one trial with --trial"),
                         ("resume", "resume a paused search, or one paused trial"),
                         ("restart", "run a trial again, with -o KEY=VALUE parameter changes")):
        p = ssub.add_parser(action, help=text)
        p.add_argument("name")
        p.add_argument("-t", "--trial", type=int, required=action == "restart",
                       help="trial number (default: the whole search)")
        if action == "restart":
            p.add_argument("-o", "--param", type=key_value, action="append", default=[],
                           metavar="KEY=VALUE", help="a new parameter value; VALUE is YAML")
        add_json_flag(p)
        p.set_defaults(func=_search_control, action=action)

    from kale_ext.export import TARGETS

    p = ssub.add_parser("export", help="write a search to TensorBoard, MLflow, Optuna, "
                                       "Parquet or CSV")
    p.add_argument("name", help="a search's (or training run's) name, or its store's path")
    p.add_argument("--to", required=True, choices=TARGETS)
    p.add_argument("--dir", help="the folder to write into (tensorboard, parquet, csv; "
                                 "mlflow and optuna write DIR/<tool>.db without --uri)")
    p.add_argument("--uri", help="mlflow: a tracking URI; optuna: a storage URL or journal file")
    add_json_flag(p)
    p.set_defaults(func=_search_export)


def _best(s: dict[str, Any]) -> str:
    best = s.get("best")
    return "-" if not best else f"{_number(best['value'])} (trial {best['trial']})"


def _progress(s: dict[str, Any]) -> str:
    finished = sum(n for state, n in s["trials"].items()
                   if state in ("completed", "pruned", "stopped", "failed"))
    total = max(s.get("planned") or 0, sum(s["trials"].values()))
    running = s["trials"].get("running", 0)
    return f"{finished}/{total}" + (f" ({running} running)" if running else "")


def _search_list(args: argparse.Namespace) -> int:
    searches = _call(_manager().searches)
    if wants_json(args):
        print_json(searches)
    elif searches:
        print(table([(s["name"], s["state"], "yes" if s["alive"] else "no", _progress(s),
                      s["metric"] or "-", _best(s), s["cluster"] or "-") for s in searches],
                    ("NAME", "STATE", "DRIVER", "DONE", "METRIC", "BEST", "CLUSTER")))
    else:
        print("no searches; start one with kale.Search(...).start()")
    return 0


def _is_store_path(text: str) -> bool:
    """Whether ``text`` names a store file rather than a registered search."""
    return text.endswith(".sqlite") or os.sep in text or Path(text).expanduser().is_file()


def _search_show(args: argparse.Namespace) -> int:
    manager = _manager()
    if args.limit < 0:
        raise SystemExit(f"kale: --limit must be 0 (all trials) or more, not {args.limit}.")
    if _is_store_path(args.name):  # the hint a finished search prints: kale search show <store>
        detail, trials = _call(manager.stored_search, args.name)
        if args.best:
            sign = -1 if detail["mode"] == "max" else 1
            trials.sort(key=lambda t: (t["best"] is None, sign * (t["best"] or 0)))
    else:
        detail = _call(manager.search, args.name)
        trials = _call(manager.trials, args.name, args.limit, 0, None,
                       "best" if args.best else "number")
    if wants_json(args):
        print_json({"search": detail, "trials": trials})
        return 0
    d = detail["definition"]
    print(f"{detail['name']}: {detail['state']}, driver {'alive' if detail['alive'] else 'gone'}"
          f", {_progress(detail)} trials done")
    print(f"{d.get('metric')} ({d.get('mode')}), algorithm {d.get('algorithm')}, "
          f"scheduler {_scheduler(d.get('scheduler'))}, store {detail['store']}")
    print(f"best: {_best(detail)}")
    if detail.get("lag"):  # how far behind the driver was: its loop and its channel
        lag = detail["lag"]
        print(f"driver lag: {max(lag['recent'], lag['ingest']):.2f} s, at most "
              f"{lag['max']:.2f} s")
    metric = detail["metric"]
    if trials:
        print("\n" + table([(t["number"], t["state"], _params(t["params"]),
                             _number(t["last"].get(metric)), _number(t["best"]),
                             t["worker"] or "-", t["error"] or "")
                            for t in trials[:args.limit or None]],
                           ("TRIAL", "STATE", "PARAMS", metric.upper(), "BEST", "WORKER",
                            "ERROR")))
        more = sum(detail["trials"].values()) - len(trials[:args.limit or None])
        if more > 0:
            print(f"... and {more} more: kale search show {args.name} --limit 0 lists all")
    return 0


def _scheduler(data: Any) -> str:
    """Name a stored scheduler: its ``type`` (``name`` in older stores), else ``-``."""
    if isinstance(data, dict):
        return str(data.get("type") or data.get("name") or "-")
    return str(data or "-")


def _search_control(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"action": args.action, "trial": args.trial}
    if getattr(args, "param", None):
        body["params"] = dict(args.param)
    answer = _call(_manager().control, args.name, body)
    if wants_json(args):
        print_json(answer)
    else:
        print(answer["message"])
    return 0


def _search_export(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from kale_ext.export import export

    done = export(args.name, to=args.to, dir=args.dir, uri=args.uri)
    if wants_json(args):
        print_json(asdict(done))
    else:
        print(done)
    return 0


# -- kale kernels -----------------------------------------------------------------------
def register_kernel_commands(sub: Any) -> None:
    """``kale kernels install|list``."""
    group = sub.add_parser("kernels", help="install Jupyter kernels with kale preloaded")
    ksub = group.add_subparsers(dest="kernels_command", required=True, metavar="COMMAND")

    p = ksub.add_parser("install", help="install a kale kernelspec")
    p.add_argument("--spec", choices=("kale-python", "kale-env"), default="kale-python",
                   help="kale-python: this Python with kale loaded; kale-env: a site module "
                        "or conda env through a launcher script")
    p.add_argument("--name", help="kernel name (default: the spec's)")
    p.add_argument("--display-name", help="the label in JupyterLab's launcher")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument("--prefix", help="install under PREFIX (e.g. a conda env)")
    where.add_argument("--sys-prefix", action="store_true", help="install under sys.prefix")
    p.add_argument("--module", action="append", default=[], metavar="MODULE",
                   help="kale-env: a module to load (repeatable)")
    p.add_argument("--conda-env", help="kale-env: a conda env name or path to activate")
    p.add_argument("--setup", help="kale-env: a shell file to source first")
    p.add_argument("--python", help="kale-env: the python to run (default: python3)")
    add_json_flag(p)
    p.set_defaults(func=_kernels_install)

    p = ksub.add_parser("list", help="installed kernelspecs, kale's marked")
    add_json_flag(p)
    p.set_defaults(func=_kernels_list)


def _kernels_install(args: argparse.Namespace) -> int:
    import sys

    from kale_ext.kernelspecs import install

    env = {"modules": " ".join(args.module), "conda_env": args.conda_env,
           "setup": args.setup, "python": args.python}
    path = install(args.spec, name=args.name, user=args.user,
                   prefix=sys.prefix if args.sys_prefix else args.prefix,
                   display_name=args.display_name,
                   env={k: v for k, v in env.items() if v})
    if wants_json(args):
        print_json({"spec": args.spec, "path": path})
    else:
        print(f"installed kernelspec {args.name or args.spec} in {path}")
    return 0


def _kernels_list(args: argparse.Namespace) -> int:
    from kale_ext.kernelspecs import installed

    specs = installed()
    if wants_json(args):
        print_json(specs)
        return 0
    print(table([(name, s["kale"] or "-", s["display_name"], s["resource_dir"])
                 for name, s in specs.items()], ("NAME", "KALE", "DISPLAY NAME", "PATH")))
    return 0

