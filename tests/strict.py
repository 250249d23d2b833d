"""Strict mode: with ``KALE_STRICT=1`` (``make test`` and ``make bench`` set it) a test
that would be skipped fails instead, naming what is missing.

A plain ``pytest`` keeps skipping with the reason. Only a reason on :data:`ALLOWED`, a
component that no setup of this machine can provide, stays a skip in strict mode; a skip
reason for a missing piece that the Makefile installs (Slurm, chromium, Horovod, MPI, the
test bed, torch, ipywidgets, ...) must not start with one of these.

``tests/conftest.py`` registers the hooks below; ``pytest -p tests.strict`` loads them
alone (tests/test_strict.py does, in pytester's sandboxes).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

ENV = "KALE_STRICT"

# Skip reasons (prefixes) that stay skips in strict mode: hardware this machine lacks.
ALLOWED = ("needs a GPU",)


def strict() -> bool:
    """Whether strict mode is on: ``KALE_STRICT`` set to anything but empty or ``0``."""
    return os.environ.get(ENV, "") not in ("", "0")


def skip_reason(longrepr: Any) -> str:
    """The reason of a skipped report (its longrepr is ``(path, line, 'Skipped: why')``)."""
    text = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


def allowed(reason: str) -> bool:
    """Whether a skip for ``reason`` stays a skip in strict mode."""
    return reason.startswith(ALLOWED)


def _harden(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not strict() or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report.longrepr)
    if allowed(reason):
        return
    report.outcome = "failed"
    # The reason first: the short summary shows only the start of the first line.
    report.longrepr = (f"{ENV}=1, skip fails: {reason}\n(a missing component fails in strict "
                       f"mode, which make test and make bench set; install it)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None],
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Turn a test's skip (marker, fixture or body) into a failure in strict mode."""
    report = yield
    _harden(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector,
                               ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Turn a module-level skip (``importorskip`` at import, say) into a collection error."""
    report = yield
    _harden(report)
    return report


def pytest_report_header(config: pytest.Config) -> str:
    """Say whether skips fail in this run."""
    if strict():
        return f"{ENV}=1: a skip fails unless its reason starts with one of {list(ALLOWED)}"
    return f"{ENV} unset: skips for missing components stay skips (make test sets it)"
