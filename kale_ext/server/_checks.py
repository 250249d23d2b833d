"""Checks of what a REST request carries before the manager acts on it.

Ids in URLs, cluster start overrides and query numbers: each refusal is an
:class:`ApiError` (400) naming the value, the rule and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kale_ext._errors import KaleError
from kale_ext.trial import TrialState

ID_RULE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ID = re.compile(ID_RULE)
# SQLite's row ids and the store's trial numbers are 64-bit signed integers.
MAX_INT = 2**63 - 1


class ApiError(KaleError):
    """A request the manager refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# What each id names, and where a good one comes from.
ID_KINDS: dict[str, tuple[str, str]] = {
    "cluster": ("Cluster id", "use an id that kale.clusters() or GET kale/api/clusters lists"),
    "failed-start": ("Failed start id", "use an id that GET kale/api/failed-starts lists"),
    "search": ("Search name", "use a name that kale.searches() or GET kale/api/searches lists"),
}


def check_id(kind: str, value: str) -> str:
    """Return ``value`` when it is a valid id of ``kind``; else raise a 400.

    The rule keeps ids to one plain file name: no ``/``, no leading ``.`` or ``-``,
    no control characters, so an id can never reach outside the registry.
    """
    what, fix = ID_KINDS[kind]
    # fullmatch: "$" alone would let a trailing newline through.
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ApiError(400, f"{what} {value!r} in the URL must match {ID_RULE} (a letter or "
                            "digit, then at most 63 letters, digits, '_', '.' or '-'); "
                            f"{fix}.")
    return value


def check_trial(text: str) -> int:
    """Return a trial number from a URL; a 400 when it is no 64-bit integer >= 0."""
    if not (isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 19
            and int(text) <= MAX_INT):
        shown = text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"
        raise ApiError(400, f"Trial number {shown!r} in the URL must be an integer between "
                            f"0 and {MAX_INT}; use a number that GET "
                            "kale/api/searches/<name>/trials lists.")
    return int(text)


# Start options that put shell lines or code into a job script or a worker (a prologue,
# batch directives, worker and scheduler arguments, the Python to run): only the user's
# own kernel (kale.start_cluster) or profile may give them, never a request over HTTP.
KERNEL_ONLY = frozenset({"prologue", "job_extra", "worker_options", "worker_extra_args",
                         "scheduler_options", "security", "python"})


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """Refuse start overrides that only the user's own kernel may give (400 naming them).

    Those are the :data:`KERNEL_ONLY` keys, and ``tls`` set to anything but True: a
    plaintext cluster is an opt-in of the kernel's, never of an HTTP body.
    """
    refused = sorted(str(k) for k in overrides if str(k).replace("-", "_") in KERNEL_ONLY)
    if refused:
        raise ApiError(400, f"Field 'overrides' may not contain {', '.join(map(repr, refused))} "
                            "over REST: such options put shell lines or code into a job "
                            "script or a worker. Put them in a profile (kale profiles) and "
                            "name it in 'profile', or pass them to kale.start_cluster(...) "
                            "in your own kernel.")
    if "tls" in overrides and overrides["tls"] is not True:
        raise ApiError(400, f"Field 'overrides' may not set 'tls' to {overrides['tls']!r} "
                            "over REST: a cluster started over HTTP always uses TLS. Leave "
                            "'tls' out; a plaintext cluster (tls='off-i-know') can only be "
                            "started from your own kernel.")


def check_page(limit: int, offset: int, state: str | None, order: str) -> list[int] | None:
    """Check a page of trials asked for; return the stored states it keeps (None: all)."""
    if not 0 <= limit <= MAX_INT or not 0 <= offset <= MAX_INT:
        raise ApiError(400, f"Query arguments 'limit' and 'offset' must be integers >= 0, but "
                            f"got limit={limit} and offset={offset}; limit=0 returns every "
                            "trial.")
    labels = {s.label: s for s in TrialState}
    if state is not None and state not in labels:
        raise ApiError(400, f"Query argument 'state' must be one of {', '.join(labels)}, but "
                            f"got state={state!r}.")
    if order not in ("number", "best"):
        raise ApiError(400, f"Query argument 'order' must be 'number' or 'best', but got "
                            f"order={order!r}.")
    return None if state is None else [int(labels[state])]
