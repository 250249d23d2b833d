"""Where checkpoints live, and whether the workers see the same folder as the driver.

The store is written by the driver alone and stays on a local disk; checkpoints are
written by the trials, on the workers, and read back by the next attempt of a trial,
which may run on another node. So they belong on a file system every node shares (a
centre's scratch): ``kale.checkpoint-dir`` says where (``$SCRATCH/kale/checkpoints``,
environment variables and ``~`` expanded); unset, they sit beside the store. Each attempt
of a search's trial writes its own folder, ``<root>/trial-<n>/attempt-<m>``: an attempt the
driver gave up on may still be writing when the next one starts from its latest checkpoint.

A folder's name says nothing about whether a node sees it (``/tmp`` is node-local at most
centres, shared on some). The rule kale uses is the test itself: the driver writes a
marker file into the checkpoint folder; a trial that does not find it there, on its
worker, writes checkpoints that the driver and the other nodes will never see, and kale
warns (:class:`CheckpointWarning`), once per search or run, naming worker, host and folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import warnings
from pathlib import Path

from kale_ext import config, registry
from kale_ext._errors import ConfigError

logger = logging.getLogger(__name__)

CHECKPOINT_MARKER = ".kale-driver"
"""The file the driver writes into a checkpoint root; a worker that sees it shares the folder."""


class CheckpointWarning(UserWarning):
    """Checkpoints go to a folder the driver and the other nodes do not see."""


def checkpoint_setting() -> Path | None:
    """``kale.checkpoint-dir`` with ``~`` and environment variables expanded; None when unset.

    Raises
    ------
    ConfigError
        When the setting names an environment variable that is not set here (a profile
        written for a centre's ``$SCRATCH``, used on a laptop), or is not absolute.
    """
    raw = config.get("checkpoint-dir")
    if not raw:
        return None
    text = os.path.expandvars(os.path.expanduser(str(raw)))
    if "$" in text:
        missing = sorted({part.split("/")[0].strip("{}") for part in text.split("$")[1:]})
        raise ConfigError(
            f"kale.checkpoint-dir={raw!r} names the environment variable(s) "
            f"{', '.join('$' + m for m in missing)}, which are not set in this process. Set "
            "them (e.g. SCRATCH=/path/to/shared/scratch), or set kale.checkpoint-dir to a "
            "folder every node sees, or to null to keep checkpoints beside the store.")
    path = Path(text)
    if not path.is_absolute():
        raise ConfigError(f"kale.checkpoint-dir={raw!r} must be an absolute path (workers run "
                          f"in other folders), but it expands to {text!r}.")
    return path


def checkpoint_root(store_path: Path) -> Path:
    """Where the checkpoints of the search or run whose store is ``store_path`` live.

    ``<kale.checkpoint-dir>/<name>-<hash of the store path>/`` when the setting is made
    (the hash keeps two stores of the same name apart), else ``<store>.checkpoints/``
    beside the store. The folder is created owner-only (0700; checkpoints are pickles), with
    the :data:`CHECKPOINT_MARKER` that lets a trial tell whether its worker sees it.

    Raises
    ------
    UnsafePathError
        When the folder belongs to another user or others may write to it.
    """
    setting = checkpoint_setting()
    if setting is None:
        root = store_path.with_name(store_path.name + ".checkpoints")
    else:
        name = store_path.name.removesuffix(".sqlite").removesuffix(".kale")
        digest = hashlib.sha1(str(store_path).encode()).hexdigest()[:8]
        root = setting / f"{name}-{digest}"
    try:
        registry.private_folder(root, what="Checkpoint folder")
        stamp = f"{socket.gethostname()} {os.getpid()} {time.time():.0f}\n"
        (root / CHECKPOINT_MARKER).write_text(stamp)
    except registry.UnsafePathError:
        raise
    except OSError as e:
        raise ConfigError(f"Cannot create the checkpoint folder {root}: {e}. Set "
                          "kale.checkpoint-dir to a writable folder on a file system every "
                          "node shares.") from e
    return root


def root_of(checkpoint_dir: str) -> Path:
    """Return the checkpoint root of a trial's folder.

    That is ``<root>`` of ``<root>/trial-<n>/attempt-<m>`` (a search's trial: each attempt
    writes its own folder) or of ``<root>/trial-<n>`` (a training run).
    """
    folder = Path(checkpoint_dir)
    if folder.name.startswith("attempt-") and folder.parent.name.startswith("trial-"):
        folder = folder.parent
    return folder.parent


def sees_checkpoint_root(checkpoint_dir: str) -> bool:
    """Return whether this process sees the driver's marker in the checkpoint root.

    ``checkpoint_dir`` is a trial's folder, ``<root>/trial-<n>/attempt-<m>`` or
    ``<root>/trial-<n>``.
    """
    return (root_of(checkpoint_dir) / CHECKPOINT_MARKER).exists()


def warn_unshared(checkpoint_dir: str, worker: str, host: str) -> None:
    """Warn that the trial on ``worker`` (on ``host``) cannot see the checkpoint folder."""
    root = root_of(checkpoint_dir)
    message = (
        f"Checkpoints of this run go to {root}, but worker {worker} on host {host} does not "
        f"see that folder as this process does (no {CHECKPOINT_MARKER} file there): what it "
        "saves stays on that node, and a retry on another node starts from scratch. Set "
        "kale.checkpoint-dir to a file system every node shares, e.g. "
        "$SCRATCH/kale/checkpoints.")
    logger.warning("%s", message)
    warnings.warn(message, CheckpointWarning, stacklevel=2)
