"""The trial runtime: what every trial shares, in a search or a distributed run.

Trial states and the driver's decisions; the trial-side runtime (:func:`report`,
checkpoints, the running trial's context, :func:`run_trial` on a worker, shipping the
trial function); and :class:`Ingest`, the one step from the metric channel to the
store that a search's driver and a training run both use.
"""

from __future__ import annotations

from kale_ext.trial._context import (
    WORKER_NAME_ENV,
    ReportClient,
    TrialContext,
    current,
    using,
    worker_name,
)
from kale_ext.trial._ingest import Ingest, TrialEvents, open_store
from kale_ext.trial._report import (
    checkpoint_root,
    load_checkpoint,
    report,
    report_nowait,
    save_checkpoint,
)
from kale_ext.trial._run import pickle_function, plain_value, run_trial
from kale_ext.trial._state import CONTINUE, Action, Decision, TrialState

__all__ = [
    "CONTINUE",
    "WORKER_NAME_ENV",
    "Action",
    "Decision",
    "Ingest",
    "ReportClient",
    "TrialContext",
    "TrialEvents",
    "TrialState",
    "checkpoint_root",
    "current",
    "load_checkpoint",
    "open_store",
    "pickle_function",
    "plain_value",
    "report",
    "report_nowait",
    "run_trial",
    "save_checkpoint",
    "using",
    "worker_name",
]
