"""ipyparallel's batch engine launchers, configured from kale options.

ipyparallel writes the job scripts; kale only sets its launcher traits (``queue``,
``account``, ``qos``, ``timelimit``) and adds a few directive lines (cores, memory,
GPUs, constraint, extra flags) after validating every value, so that nothing a user
typed can break out of a directive line or be evaluated by the template formatter.
Submission errors are re-raised as :class:`BatchJobError` with the batch system's
own message, which ipyparallel's ``check_output`` call would lose.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import subprocess
from typing import Any

from ipyparallel.cluster import launcher as ipp_launcher
from traitlets import List, Unicode

from kale_ext._errors import BatchJobError, ConfigError

# A directive value: letters, digits and the punctuation batch systems use in names,
# sizes and times. No quotes, no $, no `, no ;, no braces, no newlines.
_TOKEN = re.compile(r"[A-Za-z0-9_.,:=+@%/-]+")
# Slurm constraints also combine features with & | [ ] * (never seen by a shell).
_CONSTRAINT = re.compile(r"[A-Za-z0-9_.,:=+@%/&|\[\]*-]+")
# An extra directive: flags and values separated by single spaces.
_EXTRA = re.compile(r"-[A-Za-z0-9_.,:=+@%/ -]*")
_WALLTIME = re.compile(r"[0-9]+(?:[-:][0-9]+){0,3}")


def check_token(name: str, value: Any, pattern: re.Pattern[str] = _TOKEN) -> str:
    """Return ``value`` as a string when it is safe inside a job-script directive."""
    text = str(value)
    if not pattern.fullmatch(text):
        raise ConfigError(
            f"{name}={text!r} is not allowed in a batch job script: it may contain only "
            f"characters matching {pattern.pattern} (no spaces, newlines, quotes or shell "
            f"metacharacters). Pass the plain name, e.g. {name}='debug'."
        )
    return text


def _walltime(value: Any) -> str:
    text = check_token("walltime", value)
    if not _WALLTIME.fullmatch(text):
        raise ConfigError(
            f"walltime={text!r} is not a batch time limit; write it as 'HH:MM:SS', "
            "'MM' or 'D-HH:MM:SS'."
        )
    return text


def _megabytes(value: Any) -> int:
    from dask.utils import parse_bytes

    try:
        nbytes = parse_bytes(value) if isinstance(value, str) else int(value)
    except (ValueError, TypeError) as e:
        raise ConfigError(
            f"memory={value!r} is not a size; write it as '4GiB', '500MB' or bytes."
        ) from e
    return max(1, math.ceil(nbytes / 2**20))


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer, but got {name}={value!r}.")
    return value


def _list(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a string or a list of strings, but got {value!r}.")
    return [str(v) for v in value]


def directives(kind: str, options: dict[str, Any]) -> list[str]:
    """Validated extra directive lines for one engine job of batch system ``kind``.

    Resources are per engine: ``cores``, ``memory``, ``gpus_per_worker``; plus
    ``constraint`` (Slurm), ``walltime``/``account`` where ipyparallel has no trait
    for them, and ``job_extra`` (whole flags such as ``--exclusive``).
    """
    cores = _count("cores", options.get("cores") or 1)
    memory = options.get("memory")
    gpus = _count("gpus_per_worker", options.get("gpus_per_worker") or 0)
    walltime = options.get("walltime")
    account = options.get("account")
    lines: list[str] = []
    if kind == "slurm":
        prefix = "#SBATCH"
        lines.append(f"--cpus-per-task={cores}")
        if memory:
            lines.append(f"--mem-per-cpu={math.ceil(_megabytes(memory) / cores)}M")
        if gpus:
            lines.append(f"--gpus-per-task={gpus}")
        if options.get("constraint"):
            constraint = check_token("constraint", options["constraint"], _CONSTRAINT)
            lines.append(f"--constraint={constraint}")
    elif kind == "pbs":
        prefix = "#PBS"
        select = f"select=1:ncpus={cores}"
        if memory:
            select += f":mem={_megabytes(memory)}mb"
        if gpus:
            select += f":ngpus={gpus}"
        lines.append(f"-l {select}")
        if walltime:
            lines.append(f"-l walltime={_walltime(walltime)}")
        if account:
            lines.append(f"-A {check_token('account', account)}")
    elif kind == "sge":
        prefix = "#$"
        if memory:
            lines.append(f"-l h_vmem={_megabytes(memory)}M")
        if walltime:
            lines.append(f"-l h_rt={_walltime(walltime)}")
        if account:
            lines.append(f"-A {check_token('account', account)}")
    elif kind == "lsf":
        prefix = "#BSUB"
        lines.append(f"-n {cores}")
        if memory:
            lines.append(f"-M {_megabytes(memory)}MB")
        if walltime:
            lines.append(f"-W {_walltime(walltime)}")
        if account:
            lines.append(f"-P {check_token('account', account)}")
    else:
        raise ConfigError(
            f"No batch engine launcher for kind={kind!r}; use slurm, pbs, sge or lsf."
        )
    extras = _list("job_extra", options.get("job_extra"))
    lines.extend(check_token("job_extra", extra, _EXTRA) for extra in extras)
    return [f"{prefix} {line}" for line in lines]


def prologue(options: dict[str, Any]) -> str:
    """The user's own shell lines (``module load ...``), run as written before the engines."""
    lines = _list("prologue", options.get("prologue"))
    for line in lines:
        if "\n" in line or "\r" in line or "\0" in line:
            raise ConfigError(
                f"prologue line {line!r} contains a line break or NUL; pass one command per "
                "list item, e.g. prologue=['module load python', 'source env/bin/activate']."
            )
    return "\n".join(lines)


def launcher_traits(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for the engine launcher: ipyparallel's own traits plus ours."""
    traits: dict[str, Any] = {
        "kale_directives": directives(kind, options),
        "kale_prologue": prologue(options),
    }
    if options.get("queue"):
        traits["queue"] = check_token("queue", options["queue"])
    if kind == "slurm":
        if options.get("account"):
            traits["account"] = check_token("account", options["account"])
        if options.get("qos"):
            traits["qos"] = check_token("qos", options["qos"])
        if options.get("walltime"):
            traits["timelimit"] = _walltime(options["walltime"])
    return traits


class KaleBatchMixin(ipp_launcher.BatchSystemLauncher):
    """Adds validated directives and a prologue to ipyparallel's template; keeps sbatch's words."""

    kale_directives = List(Unicode(), help="Validated directive lines").tag(to_dict=True)
    kale_prologue = Unicode("", help="Shell lines run before the engines").tag(to_dict=True)

    def _insert_options_in_script(self) -> None:
        super()._insert_options_in_script()
        # Placeholders, not values: values go through the namespace, so braces in them
        # are never evaluated by ipyparallel's EvalFormatter.
        template: str = self.batch_template  # type: ignore[has-type]
        first, rest = template.split("\n", 1)
        body = rest.split("\n")
        run_at = next((i for i, line in enumerate(body) if "{program_and_args}" in line), len(body))
        body.insert(run_at, "{kale_prologue}")
        self.batch_template = "\n".join([first, "{kale_directives}", *body])

    def write_batch_script(self, n: int = 1) -> None:
        namespace: dict[str, Any] = self.namespace  # type: ignore[has-type]
        self.namespace = {
            **namespace,
            "kale_directives": "\n".join(self.kale_directives),
            "kale_prologue": self.kale_prologue,
        }
        super().write_batch_script(n)

    def render(self, n: int) -> str:
        """Write the batch script for ``n`` engines without submitting it; return its text."""
        self.write_batch_script(n)
        with open(self.batch_file) as f:
            return f.read()

    def _run_command(self, command: list[str], **kwargs: Any) -> str:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.run(command, capture_output=True, check=False, **kwargs)
        out = proc.stdout.decode("utf8", "replace")
        err = proc.stderr.decode("utf8", "replace")
        if proc.returncode != 0:
            raise BatchJobError(
                f"{shlex.join(command)} failed with exit code {proc.returncode}: "
                f"{err.strip() or out.strip()}",
                job_id=self.job_id or None,
                output=out + err,
            )
        return out


def _named(cls: type) -> type:
    # ipyparallel records launcher classes in its cluster file by this name and
    # imports them back from it on reconnect.
    cls.entrypoint_name = f"{cls.__module__}.{cls.__name__}"  # type: ignore[attr-defined]
    return cls


@_named
class SlurmEngineSetLauncher(KaleBatchMixin, ipp_launcher.SlurmEngineSetLauncher):
    """ipyparallel's Slurm engine set: one job running ``srun`` with n engine tasks."""


@_named
class PBSEngineSetLauncher(KaleBatchMixin, ipp_launcher.PBSEngineSetLauncher):
    """ipyparallel's PBS engine set (a job array of n engines)."""


@_named
class SGEEngineSetLauncher(KaleBatchMixin, ipp_launcher.SGEEngineSetLauncher):
    """ipyparallel's SGE engine set (a job array of n engines)."""


@_named
class LSFEngineSetLauncher(KaleBatchMixin, ipp_launcher.LSFEngineSetLauncher):
    """ipyparallel's LSF engine set (a job array of n engines)."""

    def start(self, n: int = 1) -> str:
        # bsub reads its #BSUB directives from stdin; feed the file rather than a shell pipe.
        self.write_batch_script(n)
        with open(self.batch_file) as script:
            output = self._run_command(self.submit_command, stdin=script,
                                       env={**os.environ, **self.get_env()})
        job_id: str = self.parse_job_id(output)
        self.notify_start(job_id)
        return job_id


ENGINE_LAUNCHERS: dict[str, type[ipp_launcher.BaseLauncher]] = {
    "local": ipp_launcher.LocalEngineSetLauncher,
    "slurm": SlurmEngineSetLauncher,
    "pbs": PBSEngineSetLauncher,
    "sge": SGEEngineSetLauncher,
    "lsf": LSFEngineSetLauncher,
}
