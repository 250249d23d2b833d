"""The trial runtime: what every trial shares, in a search or a distributed run.

Trial states and the driver's decisions; the trial-side runtime (:func:`report`,
checkpoints and where they live, the running trial's context, :func:`run_trial` on a
worker, shipping the trial function, the GPUs a worker process is bound to); and
:class:`Ingest`, the one step from the metric channel to the store that a search's
driver and a training run both use.
"""

from __future__ import annotations

from kale_ext.trial._checkpoints import (
    CHECKPOINT_MARKER,
    CheckpointWarning,
    checkpoint_root,
    checkpoint_setting,
    sees_checkpoint_root,
)
from kale_ext.trial._context import (
    WORKER_NAME_ENV,
    ReportClient,
    TrialContext,
    current,
    using,
    worker_name,
)
from kale_ext.trial._gpus import (
    BOUND_GPUS_ENV,
    GPU_PROCESSES_ENV,
    allocated_gpus,
    bound_gpus,
    gpu_binding,
)
from kale_ext.trial._ingest import Ingest, TrialEvents, open_store
from kale_ext.trial._launch import LAUNCH_FIELDS, LaunchTimes, launch_summary
from kale_ext.trial._report import (
    STEP_KEYS,
    check_step,
    load_checkpoint,
    report,
    report_nowait,
    save_checkpoint,
)
from kale_ext.trial._run import pickle_function, plain_value, run_trial
from kale_ext.trial._state import CONTINUE, Action, Decision, TrialState

GPU_PRELOAD = "kale_ext.trial.gpu_preload"
"""The Dask nanny preload module that binds each worker process of a GPU job to its GPUs."""

__all__ = [
    "BOUND_GPUS_ENV",
    "CHECKPOINT_MARKER",
    "CONTINUE",
    "GPU_PRELOAD",
    "GPU_PROCESSES_ENV",
    "LAUNCH_FIELDS",
    "STEP_KEYS",
    "WORKER_NAME_ENV",
    "Action",
    "CheckpointWarning",
    "Decision",
    "Ingest",
    "LaunchTimes",
    "ReportClient",
    "TrialContext",
    "TrialEvents",
    "TrialState",
    "allocated_gpus",
    "bound_gpus",
    "check_step",
    "checkpoint_root",
    "checkpoint_setting",
    "current",
    "gpu_binding",
    "launch_summary",
    "load_checkpoint",
    "open_store",
    "pickle_function",
    "plain_value",
    "report",
    "report_nowait",
    "run_trial",
    "save_checkpoint",
    "sees_checkpoint_root",
    "using",
    "worker_name",
]
