"""``GET kale/api/clusters``: every registered cluster, even when its queue cannot be asked.

The batch queue of each cluster with jobs is asked first, all at once and each within
:data:`QUEUE_TIMEOUT` seconds. A cluster whose queue gave no answer about any of its
jobs (the status command failed, hung or answered in a shape nobody reads) is listed
as ``unknown`` with the reason, and its record is kept: only the queue's own word that
a job ended (or is gone) lets a record be cleaned away.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from kale_ext import registry

if TYPE_CHECKING:
    from kale_ext.clusters import ClusterRecord

logger = logging.getLogger(__name__)

# Seconds one status command (squeue, qstat, bjobs) may take before its queue counts as
# unreachable: the sidebar polls this route, and a hung queue must not hold it.
QUEUE_TIMEOUT = 10.0


def _unanswered(record: ClusterRecord) -> str | None:
    """Why ``record``'s queue gave no answer about any of its jobs; None when it did."""
    from kale_ext.clusters import batch

    if record.kind == "local" or not record.job_ids:
        return None
    try:
        states = batch.system(record.kind).job_states(record.job_ids, timeout=QUEUE_TIMEOUT)
    except Exception as e:  # no such batch system here any more, ...
        return str(e)
    if states and all(s.state == batch.UNKNOWN for s in states.values()):
        return next(iter(states.values())).reason or "no answer"
    return None


def _unknown(record: ClusterRecord, why: str) -> dict[str, Any]:
    from kale_ext.clusters import ClusterStatus

    detail = (f"the {record.kind} queue could not be asked about job(s) "
              f"{', '.join(record.job_ids)} ({why}); the cluster's record is kept")
    return ClusterStatus(record.id, record.backend, record.kind, "unknown", record.address,
                         record.dashboard, detail=detail).to_dict()


def _live(record: ClusterRecord) -> dict[str, Any] | None:
    """Return ``record``'s status; None when it was stale and is now forgotten."""
    from kale_ext.clusters import ClusterStatus, backends, is_stale

    try:
        if is_stale(record):
            logger.info("removing stale cluster record %s", record.id)
            record.forget()
            return None
    except Exception as e:  # cannot tell: keep the record, say why
        return _unknown(record, str(e))
    known = backends()
    try:
        if record.backend not in known:
            raise KeyError(f"Unknown backend {record.backend!r}; installed: "
                           f"{', '.join(sorted(known)) or 'none'}.")
        cluster = known[record.backend].connect(record)
        try:
            return cluster.status().to_dict()
        finally:
            cluster.disconnect()
    except Exception as e:
        why = e.args[0] if isinstance(e, KeyError) else str(e)
        return ClusterStatus(record.id, record.backend, record.kind, "unreachable",
                             record.address, record.dashboard, detail=why).to_dict()


def cluster_list() -> list[dict[str, Any]]:
    """Every registered cluster's status, newest last; see the module's docstring."""
    from kale_ext.clusters import ClusterRecord

    records = []
    for data in registry.records("clusters"):
        try:
            records.append(ClusterRecord.from_dict(data))
        except TypeError as e:  # a record missing its id or backend: nothing to show
            logger.warning("skipping a malformed cluster record %r: %s", data, e)
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(records))),
                            thread_name_prefix="kale-queue") as pool:
        unanswered = list(pool.map(_unanswered, records))
    out = []
    for record, why in zip(records, unanswered, strict=True):
        shape = _unknown(record, why) if why is not None else _live(record)
        if shape is not None:
            out.append(shape)
    return out
