"""kale_ext: interactive deep learning on HPC from Jupyter.

Start Dask or ipyparallel clusters on a batch queue (or locally), run
hyperparameter searches and distributed training on them, and steer it all live
from a notebook, the JupyterLab sidebar or the ``kale`` command line.

    import kale_ext as kale
    cluster = kale.start_cluster()
    search = kale.Search(train, {"lr": kale.loguniform(1e-4, 1e-1)}, metric="val_acc",
                         scheduler=kale.ASHA(max_t=16), trials=32, cluster=cluster)
    search.start()
"""

from __future__ import annotations

import importlib
from typing import Any

from kale_ext._errors import (
    ClusterError,
    ConfigError,
    KaleError,
    SearchError,
    TrialPruned,
    TrialStopped,
)
from kale_ext.clusters import Cluster, clusters, connect, start_cluster, stop

__version__ = "0.1.0"

# Search names load on first use: Optuna and pandas are slow to import and a kernel
# that only manages clusters should not pay for them.
_LAZY = {
    "Search": "kale_ext.search",
    "uniform": "kale_ext.search",
    "loguniform": "kale_ext.search",
    "int": "kale_ext.search",
    "choice": "kale_ext.search",
    "grid": "kale_ext.search",
    "FIFO": "kale_ext.search",
    "ASHA": "kale_ext.search",
    "Hyperband": "kale_ext.search",
    "MedianStopping": "kale_ext.search",
    "PBT": "kale_ext.search",
    "searches": "kale_ext.search",
    "control": "kale_ext.search",
    "report": "kale_ext.trial",
    "report_nowait": "kale_ext.trial",
    "save_checkpoint": "kale_ext.trial",
    "load_checkpoint": "kale_ext.trial",
    "train_distributed": "kale_ext.training",
    "rank": "kale_ext.training",
    "world_size": "kale_ext.training",
    "local_rank": "kale_ext.training",
    "device": "kale_ext.training",
    "shard": "kale_ext.training",
    "ShardSampler": "kale_ext.training",
    "scale_lr": "kale_ext.training",
    "lr_warmup": "kale_ext.training",
    "cached": "kale_ext.training",
}

__all__ = [
    "Cluster",
    "ClusterError",
    "ConfigError",
    "KaleError",
    "SearchError",
    "TrialPruned",
    "TrialStopped",
    "__version__",
    "clusters",
    "connect",
    "start_cluster",
    "search",
    "stop",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name == "search":  # the package, callable: kale.search(name) finds a search
        return importlib.import_module("kale_ext.search")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kale_ext' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext kale_ext``: the ``%kale`` line magics and the ``%%kale run`` cell magic."""
    from kale_ext.magics import load_ipython_extension as load

    load(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # For `jupyter labextension develop --overwrite .`; wheels install it as shared data.
    return [{"src": "labextension", "dest": "kale-ext"}]
