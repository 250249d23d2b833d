"""Horovod over gloo: the rendezvous server in the kernel, and the install check.

``horovodrun --gloo`` starts an HTTP rendezvous server, assigns slots and launches
each rank with ``HOROVOD_*`` variables. kale does the same with the cluster's workers
as slots, so that ``hvd.init()`` in the user's code just works.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from kale_ext._errors import ConfigError
from kale_ext.training._rendezvous import RankInfo

INSTALL_HINT = (
    "Horovod is built from source: run `bash deploy/horovod/build.sh` in a kale_ext checkout "
    "(it caches the wheel), or `pip install kale-ext[horovod]` with a C++17 compiler, the "
    "system cmake and HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 set."
)


def require_horovod() -> None:
    """Raise a clear error when Horovod (with its torch frontend and gloo) is missing."""
    if importlib.util.find_spec("horovod") is None:
        raise ConfigError("engine='horovod' needs the horovod module, which is not installed "
                          f"in {_python()}. {INSTALL_HINT}")
    try:
        import horovod.torch as hvd
    except ImportError as e:
        raise ConfigError(f"engine='horovod' needs horovod.torch, which fails to import: {e}. "
                          f"Rebuild Horovod against this torch. {INSTALL_HINT}") from e
    if not hvd.gloo_built():
        raise ConfigError(f"This Horovod was built without gloo (HOROVOD_WITH_GLOO=1), which "
                          f"kale uses to launch ranks. {INSTALL_HINT}")


def _python() -> str:
    import sys

    return sys.executable


class Rendezvous:
    """Horovod's gloo rendezvous server, serving one run's slots; ``stop()`` when done."""

    def __init__(self, infos: list[RankInfo]) -> None:
        from horovod.runner.common.util.hosts import SlotInfo
        from horovod.runner.http.http_server import RendezvousServer

        self._server: Any = RendezvousServer(verbose=0)
        self.port = int(self._server.start())
        self._server.init([SlotInfo(hostname=i.hostname, rank=i.rank, local_rank=i.local_rank,
                                    cross_rank=i.cross_rank, size=i.size,
                                    local_size=i.local_size, cross_size=i.cross_size)
                           for i in infos])

    def stop(self) -> None:
        self._server.stop()
