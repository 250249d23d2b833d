"""kale_ext: interactive deep learning on HPC from Jupyter.

Start Dask or ipyparallel clusters on a batch queue (or locally), run
hyperparameter searches and distributed training on them, and steer it all live
from a notebook, the JupyterLab sidebar or the ``kale`` command line.
"""

from __future__ import annotations

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
    "stop",
]
