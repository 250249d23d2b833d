"""The JSON shapes of the ``kale/api`` REST routes.

Mirrored one to one by the TypeScript interfaces in ``src/models.ts``; a change here
is a change there. Cluster shapes are ``ClusterStatus.to_dict()`` and trial shapes
``TrialRecord.to_dict()``, so the server adds no second vocabulary.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

# --- clusters -------------------------------------------------------------------------


class WorkerShape(TypedDict):
    name: str
    address: str
    host: str
    cores: int
    memory: int  # bytes; 0 when unknown
    job_id: str | None


class JobShape(TypedDict):
    job_id: str
    state: str  # the batch system's own word: PENDING, RUNNING, ...
    reason: str


class IdleShape(TypedDict):
    """A cluster's idle clock, in seconds; ``left`` None: in use or no timeout."""

    timeout: float | None
    idle_for: float | None
    left: float | None


class ClusterShape(TypedDict):
    """``GET kale/api/clusters`` (a list of these), ``GET kale/api/clusters/<id>``."""

    id: str
    backend: str
    kind: str
    state: str  # running | unreachable | stopped | unknown (its queue could not be asked)
    address: str
    dashboard: str | None
    workers: list[WorkerShape]
    jobs: list[JobShape]
    detail: str
    idle: IdleShape | None
    cores: int
    memory: int
    n_workers: int


class FailedStartShape(TypedDict):
    """``GET kale/api/failed-starts``: a cluster start that failed, until dismissed."""

    id: str
    time: float
    kind: str
    backend: str
    profile: str | None
    workers: int | None
    error: str
    type: str


class StartClusterBody(TypedDict, total=False):
    """``POST kale/api/clusters``; every key optional (the default profile's values)."""

    profile: str | None
    kind: str | None
    backend: str | None
    workers: int | None
    overrides: dict[str, Any]


class PatchClusterBody(TypedDict, total=False):
    """``PATCH kale/api/clusters/<id>``: either ``workers`` or ``minimum`` and ``maximum``."""

    workers: int
    minimum: int
    maximum: int


class ClusterActionShape(TypedDict):
    """Answer of PATCH and DELETE on a cluster."""

    id: str
    message: str


# --- profiles --------------------------------------------------------------------------


class ProfileShape(TypedDict):
    name: str
    options: dict[str, Any]  # keyword form: kind, backend, workers, queue, walltime, ...


class ProfilesShape(TypedDict):
    """``GET kale/api/profiles``."""

    default: str
    profiles: list[ProfileShape]


# --- searches --------------------------------------------------------------------------


class BestShape(TypedDict):
    trial: int
    value: float
    step: int | None
    config: dict[str, Any]
    state: str


class SearchShape(TypedDict):
    """One entry of ``GET kale/api/searches``."""

    name: str
    store: str
    cluster: str | None
    started: float | None
    state: str  # running | paused | completed | ... | "unreadable: <why>" | "missing: <why>"
    alive: bool  # a driver is listening for control commands
    metric: str | None
    mode: str | None
    planned: int | None  # trials the search was asked for
    trials: dict[str, int]  # trial counts by state
    best: BestShape | None


class ForgetShape(TypedDict):
    """Answer of ``DELETE kale/api/searches/<name>[?delete_files=1]``."""

    name: str
    deleted: list[str]  # files and folders deleted (with delete_files)
    kept: list[str]  # the store and checkpoint folders left on disk (without)
    message: str


class SearchDetailShape(SearchShape):
    """``GET kale/api/searches/<name>``: the summary plus the definition."""

    definition: dict[str, Any]  # without the pickled function
    created: float | None
    lag: dict[str, float] | None  # the driver's lag (s): loop, ingest, recent, max; time


class TrialShape(TypedDict):
    """One entry of ``GET kale/api/searches/<name>/trials``."""

    number: int
    state: str
    params: dict[str, Any]
    attempt: int
    worker: str | None
    job_id: str | None
    started: float | None
    ended: float | None
    last: dict[str, Any]
    best: float | None
    best_step: int | None
    error: str | None
    checkpoint: str | None
    retries: int
    updated: float | None
    launch: dict[str, Any]


class MetricRowShape(TypedDict):
    rowid: int
    trial: int
    attempt: int
    rank: int
    seq: int
    step: int | None
    time: float
    values: dict[str, Any]


class MetricsShape(TypedDict):
    """``GET kale/api/searches/<name>/trials/<n>/metrics?since=<rowid>``.

    ``last_rowid`` is the value to pass as ``since`` next time (unchanged when no row
    is new), so a client fetches only what it has not seen.
    """

    trial: int
    since: int
    last_rowid: int
    rows: list[MetricRowShape]


class SeriesPointShape(TypedDict):
    """One finite value of one metric, reported by rank 0 of a trial."""

    rowid: int
    trial: int
    attempt: int  # a new attempt starts the trial's history again
    step: int | None
    value: float


class SearchMetricsShape(TypedDict):
    """``GET kale/api/searches/<name>/metrics?since=<rowid>&metric=<name>&limit=<n>``.

    One metric (default: the search's own) of every trial, in row order. At most
    ``limit`` stored rows (default and maximum 5000) are read per answer; ``more`` says
    rows remain, and ``last_rowid`` is the ``since`` of the next request. Rows without a
    finite value of the metric, and rows of ranks other than 0, give no point.
    """

    metric: str
    since: int
    last_rowid: int
    more: bool
    rows: list[SeriesPointShape]


Action = Literal["stop", "pause", "resume", "restart"]


class ControlBody(TypedDict, total=False):
    """``POST kale/api/searches/<name>/control``."""

    action: Action
    trial: int | None
    params: dict[str, Any]


class ControlShape(TypedDict):
    """Answer of a control command the driver accepted."""

    name: str
    action: str
    trial: int | None
    message: str


class ErrorShape(TypedDict):
    """Every 4xx/5xx answer (jupyter_server's APIHandler format)."""

    message: str
    reason: str | None
