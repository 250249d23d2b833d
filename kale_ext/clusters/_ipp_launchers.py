"""kale's options as ipyparallel keywords, validated before anything starts.

What a batch system writes (its directives, its launcher class) lives in its own file
under :mod:`kale_ext.clusters.batch`; this module adds what every system shares: the
extra flags (``job_extra``), the prologue, the queue, and the launcher for each kind.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kale_ext._errors import ConfigError
from kale_ext.clusters import batch
from kale_ext.clusters._idle import IDLE_KEYS
from kale_ext.clusters.batch._base import EXTRA, as_list, check_token, count

__all__ = ["ENGINE_LAUNCHERS", "check_options", "check_token", "directives", "launcher_traits",
           "prologue"]

_KNOWN = frozenset({
    "workers", "engines_per_job", "cores", "memory", "walltime", "queue", "account", "qos",
    "constraint", "gpus_per_worker", "job_extra", "prologue", "interface_host", "profile",
    "start_timeout",
})
# Profile keys that only mean something to the Dask backend; profiles are shared.
_DASK_ONLY = frozenset({
    "processes", "threads_per_worker", "lifetime_margin", "scheduler_options",
    "worker_extra_args", "local_directory", "dashboard_address", "interface",
    "shared_temp_directory", "security", "python", "death_timeout", "nanny",
})


def _system(kind: str) -> batch.BatchSystem:
    if kind not in batch.names():
        raise ConfigError(f"No batch engine launcher for kind={kind!r}; use "
                          f"{', '.join(batch.names())}.")
    return batch.system(kind)


def directives(kind: str, options: Mapping[str, Any]) -> list[str]:
    """Return validated directive lines for one engine job of batch system ``kind``.

    Resources are per engine: ``cores``, ``memory``, ``gpus_per_worker``; plus what the
    system's launcher has no trait for and ``job_extra`` (whole flags such as
    ``--exclusive``).
    """
    count("cores", options.get("cores") or 1)
    count("gpus_per_worker", options.get("gpus_per_worker") or 0)
    system = _system(kind)
    lines = system.engine_directives(options)
    extras = as_list("job_extra", options.get("job_extra"))
    lines.extend(check_token("job_extra", extra, EXTRA) for extra in extras)
    return [f"{system.directive_prefix} {line}" for line in lines]


def prologue(options: Mapping[str, Any]) -> str:
    """Return the user's shell lines (``module load ...``), run as written before the engines."""
    lines = as_list("prologue", options.get("prologue"))
    for line in lines:
        if "\n" in line or "\r" in line or "\0" in line:
            raise ConfigError(
                f"prologue line {line!r} contains a line break or NUL; pass one command per "
                "list item, e.g. prologue=['module load python', 'source env/bin/activate']."
            )
    return "\n".join(lines)


def launcher_traits(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for the engine launcher: ipyparallel's own traits plus ours."""
    traits: dict[str, Any] = {
        "kale_directives": directives(kind, options),
        "kale_prologue": prologue(options),
    }
    if options.get("queue"):
        traits["queue"] = check_token("queue", options["queue"])
    traits.update(_system(kind).engine_traits(options))
    return traits


def check_options(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """Return the options the ipyparallel backend takes, validated, Dask-only keys dropped."""
    unknown = set(options) - _KNOWN - _DASK_ONLY - IDLE_KEYS  # idle keys: see start()
    if unknown:
        raise ConfigError(
            f"Unknown option(s) for backend='ipyparallel': {', '.join(sorted(unknown))}. "
            f"Known: {', '.join(sorted(_KNOWN))}."
        )
    opts = {k: v for k, v in options.items() if k in _KNOWN and v is not None}
    per_job = opts.get("engines_per_job")
    if per_job is not None and (isinstance(per_job, bool) or not isinstance(per_job, int)
                                or per_job < 1):
        raise ConfigError(
            f"engines_per_job must be a positive integer (engines per batch job) or None "
            f"(all engines of a scale step in one job), but got engines_per_job={per_job!r}."
        )
    if opts.get("interface_host"):
        check_token("interface_host", opts["interface_host"])
    if kind != "local":
        launcher_traits(kind, opts)  # validate every value before anything starts
    return opts


class _Launchers(Mapping[str, type[Any]]):
    """The engine launcher class of each kind; a batch system is loaded when asked for."""

    def __getitem__(self, kind: str) -> type[Any]:
        if kind == "local":
            from ipyparallel.cluster import launcher

            return launcher.LocalEngineSetLauncher
        if kind not in batch.names():
            raise KeyError(kind)
        return batch.system(kind).engine_launcher

    def __iter__(self) -> Iterator[str]:
        return iter(("local", *batch.names()))

    def __len__(self) -> int:
        return 1 + len(batch.names())


ENGINE_LAUNCHERS: Mapping[str, type[Any]] = _Launchers()
