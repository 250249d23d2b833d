"""When a cluster's workers retire, and keeping new work off the ones about to.

A batch worker retires a little before its job's walltime (its lifetime). A search
asks its cluster when each worker retires, so that a trial can checkpoint and move
to another worker before its own is gone (see :mod:`kale_ext.search._migration`).
Backends whose workers retire override both methods; the defaults say that no worker
ever retires.
"""

from __future__ import annotations

from collections.abc import Iterable


class Lifetimes:
    """The lifetime methods of :class:`kale_ext.clusters.Cluster`."""

    def retire_times(self) -> dict[str, tuple[float, float]]:
        """Return, by worker name, when each connected worker retires.

        Returns
        -------
        dict
            ``(at, lifetime)``: the retirement as a Unix time and the worker's whole
            lifetime in seconds. Workers that never retire on their own are left out;
            a backend without lifetimes returns an empty dict.
        """
        return {}

    def drain(self, workers: Iterable[str]) -> None:
        """Give the named workers no new tasks; the tasks they run continue.

        Parameters
        ----------
        workers
            Worker names as :meth:`retire_times` gives them; unknown names are ignored.
        """
