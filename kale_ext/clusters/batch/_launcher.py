"""The part every batch system's ipyparallel engine launcher shares.

ipyparallel writes the job scripts; kale only sets its launcher traits (``queue``,
``account``, ``qos``, ``timelimit``) and adds a few directive lines (cores, memory,
GPUs, constraint, extra flags) after validating every value, so that nothing a user
typed can break out of a directive line or be evaluated by the template formatter.
Submission errors are re-raised as :class:`BatchJobError` with the batch system's
own message, which ipyparallel's ``check_output`` call would lose.
"""

from __future__ import annotations

import shlex
import subprocess
from typing import Any, TypeVar

from ipyparallel.cluster import launcher as ipp_launcher
from traitlets import List, Unicode

from kale_ext._errors import BatchJobError

L = TypeVar("L", bound=type)


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


def named(cls: L) -> L:
    """Record ``cls`` in ipyparallel's cluster file by its import path.

    A reconnecting process imports it back from there.
    """
    cls.entrypoint_name = f"{cls.__module__}.{cls.__name__}"  # type: ignore[attr-defined]
    return cls
