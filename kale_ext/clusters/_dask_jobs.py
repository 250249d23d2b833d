"""Profile options to dask-jobqueue / LocalCluster keywords, strictly checked.

What differs between batch systems (the jobqueue class, the keyword that carries the
account, extra directives) is each system's, under :mod:`kale_ext.clusters.batch`.

dask-jobqueue writes the job scripts. It pastes strings into them unquoted: batch
directives (``#SBATCH -p <queue>``) and the worker command line. So every string
that ends up in a directive is checked against a narrow character set (a newline
there would start a new script line), and every string that ends up on the worker
command line is quoted with :func:`shlex.quote`.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kale_ext import config
from kale_ext._errors import ConfigError
from kale_ext.clusters import _start_checks, batch
from kale_ext.clusters._idle import IDLE_KEYS
from kale_ext.trial import GPU_PRELOAD, GPU_PROCESSES_ENV

# A worker's own web server (Prometheus metrics, health, its Bokeh pages) has no login
# and listens on every interface of its node: it serves no page, and no Bokeh dashboard.
NO_WORKER_PAGES: dict[str, list[str]] = {"distributed.worker.http.routes": []}
_NO_WORKER_PAGES_ENV = "export DASK_DISTRIBUTED__WORKER__HTTP__ROUTES='[]'"

COMMON_KEYS = frozenset({"kind", "backend", "workers", "profile", "tls", "interface_host",
                         "dashboard_address", "memory"}) | IDLE_KEYS
LOCAL_KEYS = COMMON_KEYS | {"threads_per_worker"}
BATCH_KEYS = COMMON_KEYS | {
    "cores", "processes", "walltime", "queue", "account", "qos", "constraint",
    "gpus_per_worker", "job_extra", "prologue", "interface", "worker_options", "job_name",
    "local_directory", "death_timeout", "resource_spec", "lifetime_margin",
}

# A single token of a batch directive: partition, account, job name, qos.
_TOKEN = re.compile(r"[A-Za-z0-9_.:@%+,=/-]+")
# Slurm constraints combine features with & | [ ] ( ) *.
_CONSTRAINT = re.compile(r"[A-Za-z0-9_.:,=&|\[\]()*!-]+")
# A whole extra directive: options and values separated by spaces, nothing the shell or
# the directive parser could take as a new line, a quote or an expansion.
_DIRECTIVE = re.compile(r"[A-Za-z0-9_.:@%+,=/ &|\[\]()*!-]+")
_WALLTIME = re.compile(r"[0-9]+([-:][0-9]+)*")
_HOST = re.compile(r"[A-Za-z0-9_.:\[\]-]+")
_OPTION_NAME = re.compile(r"[a-z][a-z0-9-]*")
# Paths jobqueue puts unquoted on the worker command line (security files).
_SAFE_PATH = re.compile(r"[A-Za-z0-9_.,:@%+=/~-]+")


def _check(key: str, value: Any, pattern: re.Pattern[str], rule: str) -> str:
    text = str(value)
    if not pattern.fullmatch(text):
        bad = sorted({c for c in text if not pattern.fullmatch(c)}) or [text]
        raise ConfigError(
            f"{key}={text!r} is not allowed in a batch job script: {rule}; "
            f"offending characters: {''.join(bad)!r}. Fix the value in the profile or keyword."
        )
    return text


def check_safe_path(key: str, path: str | Path) -> str:
    """Reject a path that jobqueue would paste unquoted into the worker command."""
    return _check(key, path, _SAFE_PATH, "use a path of letters, digits and ._-/~ only "
                  "(set DASK_KALE__STATE_DIR to such a folder)")


_positive_int = _start_checks.positive_int
_memory = _start_checks.memory


def _number(seconds: float) -> int | float:
    """Return seconds as the shortest number for a command line (90, not 90.0)."""
    return int(seconds) if seconds.is_integer() else seconds


def _lines(key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"{key} must be a list of strings, but got {key}={value!r}.")
    return [str(v) for v in value]


def check_keys(kind: str, options: Mapping[str, Any]) -> None:
    """Reject options the dask backend does not know for ``kind``."""
    allowed = LOCAL_KEYS if kind == "local" else BATCH_KEYS
    unknown = sorted(k for k, v in options.items() if k not in allowed and v is not None)
    if unknown:
        raise ConfigError(
            f"Option(s) {', '.join(unknown)} do not apply to a {kind} Dask cluster. "
            f"Known options: {', '.join(sorted(allowed))}."
        )


def walltime_seconds(kind: str, walltime: str) -> int:
    """Seconds in a walltime string as ``kind``'s batch system reads it."""
    text = _check("walltime", walltime, _WALLTIME, "write it like 01:30:00")
    return batch.system(kind).walltime_seconds(text)


def lifetime_args(kind: str, walltime: str | None, margin: Any) -> list[str]:
    """``--lifetime`` options that retire a worker gracefully before its walltime.

    The margin (``kale.lifetime-margin``) shrinks to a fifth of short walltimes; the
    stagger spreads retirements so that an adaptive cluster replaces workers one by one.
    No ``--lifetime-restart``: a restarted worker would live on in a job about to end.
    """
    margin = _start_checks.seconds(
        "lifetime_margin", config.get("lifetime-margin", 300) if margin is None else margin)
    if not walltime:
        return []
    total = walltime_seconds(kind, walltime)
    margin = min(margin, total / 5)
    return ["--lifetime", f"{int(total - margin)}s", "--lifetime-stagger",
            f"{int(margin / 2)}s"]


def _worker_options(options: Mapping[str, Any]) -> list[str]:
    raw = options.get("worker_options") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"worker_options must be a mapping of dask-worker options, but got {raw!r}; "
            "for example {'resources': 'GPU=1'}."
        )
    args: list[str] = []
    for name, value in raw.items():
        name = _check("worker_options key", str(name).replace("_", "-"), _OPTION_NAME,
                      "use a dask-worker option name such as 'resources'")
        if value is True:
            args.append(f"--{name}")
        elif value not in (None, False):
            args += [f"--{name}", shlex.quote(str(value))]
    return args


def job_kwargs(kind: str, options: Mapping[str, Any], *,
               cluster_id: str = "dummy") -> dict[str, Any]:
    """Keywords for ``dask_jobqueue.<System>Cluster`` (and its Job class), validated."""
    if kind not in batch.names():
        raise ConfigError(f"No dask-jobqueue mapping for kind={kind!r}; known: "
                          f"{', '.join(batch.names())} (or 'local').")
    system = batch.system(kind)
    check_keys(kind, options)
    cores = _positive_int("cores", options.get("cores", 1))
    processes = _positive_int("processes", options.get("processes", 1))
    if processes > cores:
        raise ConfigError(f"processes={processes} exceeds cores={cores}: each Dask worker "
                          "process needs at least one core. Lower processes or raise cores.")
    kw: dict[str, Any] = {
        "cores": cores, "processes": processes,
        "memory": _memory(options.get("memory", "2GiB")),
        "python": shlex.quote(sys.executable),
        "job_name": _check("job_name", options.get("job_name") or f"kale-{cluster_id}",
                           _TOKEN, "use letters, digits and ._- only"),
        "death_timeout": _number(_start_checks.seconds(
            "death_timeout", options.get("death_timeout", 60), allow_zero=False)),
    }
    if options.get("queue") is not None:
        kw["queue"] = _check("queue", options["queue"], _TOKEN, "a partition/queue name")
    if options.get("account") is not None:
        kw[system.dask_account_keyword] = _check("account", options["account"], _TOKEN,
                                            "an account/project name")
    if options.get("walltime") is not None:
        kw["walltime"] = _check("walltime", options["walltime"], _WALLTIME,
                                "write it like 01:30:00")
    for key in system.dask_passthrough:
        if options.get(key) is not None:
            kw[key] = _check(key, options[key], _DIRECTIVE, "resource text without quotes")
    if options.get("interface") is not None:
        kw["interface"] = _check("interface", options["interface"], _HOST, "an interface name")
    if options.get("local_directory") is not None:
        local = str(options["local_directory"])
        if any(c in local for c in "\r\n\x00"):
            raise ConfigError(f"local_directory={local!r} spans several lines; give one path.")
        kw["local_directory"] = shlex.quote(local)

    directives = [_check("job_extra item", d, _DIRECTIVE, "one directive's options, no quotes")
                  for d in _lines("job_extra", options.get("job_extra"))]
    for key, template in system.dask_directives.items():
        value = options.get(key)
        if value is None:
            continue
        pattern = _CONSTRAINT if key == "constraint" else _TOKEN
        directives.append(template.format(_check(key, value, pattern, f"a {key} value")))
    for key in ("qos", "constraint", "gpus_per_worker"):
        if options.get(key) is not None and key not in system.dask_directives:
            raise ConfigError(f"{key} has no {kind} equivalent here; pass the directive in "
                              "job_extra (or resource_spec for PBS/SGE) instead.")
    kw["job_extra_directives"] = directives

    prologue = _lines("prologue", options.get("prologue"))
    for line in prologue:
        if any(c in line for c in "\r\n\x00"):
            raise ConfigError(f"prologue item {line!r} spans several lines; give one shell "
                              "line per list item.")
    kw["job_script_prologue"] = prologue = [*prologue, _NO_WORKER_PAGES_ENV]

    extra = [*_worker_options(options), "--no-dashboard"]
    gpus = options.get("gpus_per_worker")
    if gpus:
        gpus = _positive_int("gpus_per_worker", gpus)
        if gpus % processes:
            raise ConfigError(f"gpus_per_worker={gpus} cannot be split evenly among the job's "
                              f"processes={processes} worker processes; make it a multiple.")
        # The job's GPUs split among its worker processes, each bound to its own share.
        extra += ["--resources", f"GPU={gpus // processes}", "--preload-nanny", GPU_PRELOAD]
        kw["job_script_prologue"] = [*prologue, f"export {GPU_PROCESSES_ENV}={processes}"]
    extra += lifetime_args(kind, kw.get("walltime"), options.get("lifetime_margin"))
    kw["worker_extra_args"] = extra
    return kw


def check(kind: str, options: Mapping[str, Any]) -> None:
    """Check every option of a Dask start of ``kind``; start nothing, ask no queue."""
    check_keys(kind, options)
    _start_checks.common(options)
    if kind == "local":
        if options.get("threads_per_worker") is not None:
            _positive_int("threads_per_worker", options["threads_per_worker"])
        if options.get("memory") is not None:
            _memory(options["memory"], allow_auto=True)
        return
    job_kwargs(kind, options)


def cluster_class(kind: str) -> type[Any]:
    """Return the dask-jobqueue cluster class of ``kind``."""
    return batch.system(kind).dask_cluster_class()


def job_class(kind: str) -> type[Any]:
    """Return the dask-jobqueue Job class of ``kind``."""
    return cluster_class(kind).job_cls


def job_script(kind: str, options: Mapping[str, Any], *, security_dir: str | Path | None = None,
               scheduler: str = "tls://127.0.0.1:8786") -> str:
    """Render the job script dask-jobqueue would submit for one job; start nothing.

    Parameters
    ----------
    kind
        A batch system: ``"slurm"``, ``"pbs"``, ``"sge"``, ``"lsf"`` or another registered one.
    options
        Resolved profile options (as ``config.resolve`` returns them).
    security_dir
        Folder of the TLS files; the script then carries the worker's TLS options.
    scheduler
        Scheduler address written into the worker command.
    """
    from kale_ext.clusters import _dask_tls

    kw = job_kwargs(kind, options)
    security = None
    if security_dir is not None:
        check_safe_path("security folder", security_dir)
        security = _dask_tls.security(security_dir)
    job = job_class(kind)(scheduler, name="dummy-name", security=security,
                          protocol="tls://" if security else None, **kw)
    return str(job.job_script())
