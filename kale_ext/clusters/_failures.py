"""Failed cluster starts, kept in the registry until someone dismisses them.

A start that fails on a queue problem raises in the cell that asked for it; the
record here lets the sidebar (``GET kale/api/failed-starts``) show what failed and why
after the cell's output is gone, until the user dismisses it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from kale_ext import registry

KIND = "failed-starts"
_KEEP = 20  # the newest failures kept; older ones are dropped


def note_failed_start(kind: str, backend: str, options: dict[str, Any],
                      error: BaseException) -> str:
    """Record that starting a ``kind`` cluster on ``backend`` failed with ``error``.

    Returns
    -------
    str
        The record's id (``fs-…``), which dismisses it.
    """
    record_id = f"fs-{uuid.uuid4().hex[:8]}"
    registry.write(KIND, record_id, {
        "id": record_id, "time": time.time(), "kind": kind, "backend": backend,
        "profile": options.get("profile"), "workers": options.get("workers"),
        "error": str(error) or type(error).__name__, "type": type(error).__name__,
    })
    for old in sorted(registry.records(KIND), key=lambda r: r.get("time", 0))[:-_KEEP]:
        registry.remove(KIND, str(old.get("id")))
    return record_id
