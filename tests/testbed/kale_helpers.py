"""kale on the test bed: the settings a kale process there needs, and its clusters.

A kale process on the login node reaches the test bed's Slurm through ``SLURM_CONF``.
Nothing else is set: kale itself finds the address the nodes reach (the bridge's), for
the scheduler or controller and for the metric channel.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import dask.config
import pytest

import kale_ext as kale
from tests.testbed.conftest import Testbed


@contextlib.contextmanager
def on_testbed(testbed: Testbed, state_dir: Path, **settings: Any) -> Iterator[None]:
    """Point this process's kale at the test bed: Slurm clients, scratch, state folder.

    ``settings`` are more ``kale.<key>`` config values (dashes as in the YAML).
    """
    with pytest.MonkeyPatch.context() as mp:
        for name in ("SLURM_CONF", "SCRATCH"):
            mp.setenv(name, testbed.env[name])
        config = {"kale.state-dir": str(state_dir),
                  **{f"kale.{k}": v for k, v in settings.items()}}
        with dask.config.set(config):
            yield


def engines_on_two_nodes(testbed: Testbed, **options: Any) -> Any:
    """An ipyparallel cluster of two engines in one job, one engine on each of two nodes."""
    return kale.start_cluster("slurm", backend="ipyparallel", workers=2, engines_per_job=2,
                              queue="regular", walltime="00:15:00", cores=1,
                              job_extra=["--nodes=2", "--ntasks-per-node=1", *options.pop(
                                  "job_extra", [])], **options)


def by_value(*modules: Any) -> None:
    """Ship the test's own functions by value: workers need not import the tests package."""
    for module in modules:
        cloudpickle.register_pickle_by_value(module)


def scratch_dir(testbed: Testbed, prefix: str) -> Path:
    """A new folder on the shared scratch, seen by every node and the login node."""
    path = testbed.scratch / f"{prefix}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path
