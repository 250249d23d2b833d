"""Fixtures for executing the example notebooks: a private kale state, cleaned up after."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dask.config
import pytest

import kale_ext as kale


@pytest.fixture
def notebook_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The kernel's environment: small settings and a private kale state directory.

    Clusters the notebook left running (it failed before its clean-up cell) are stopped
    afterwards, batch jobs included: their daemons are detached and would outlive the test.
    """
    state = tmp_path / "kale-state"
    env = {**os.environ, "KALE_NOTEBOOK_SMALL": "1", "DASK_KALE__STATE_DIR": str(state)}
    env.pop("KALE_NOTEBOOK_FIGURES", None)
    yield env
    with dask.config.set({"kale.state-dir": str(state)}):
        for status in kale.clusters():
            kale.stop(status.id)
