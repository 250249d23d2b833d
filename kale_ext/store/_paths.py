"""Where stores live, whether their disk suits SQLite, and how a row's step is read."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from kale_ext import config
from kale_ext._errors import StoreError

SUFFIX = ".kale.sqlite"
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "ceph",
                       "fuse.sshfs", "panfs", "wekafs")
_STEP_KEYS = ("step", "epoch", "iteration", "training_iteration")


def default_path(name: str) -> Path:
    """Where the store of search ``name`` goes by default: kale's store dir, on local disk."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise StoreError(f"Search name {name!r} must be letters, digits, '.', '_' or '-' "
                         "(it names a file); pick a name like 'mnist-tpe'.")
    return config.store_dir() / f"{name}{SUFFIX}"


def network_filesystem(path: str | os.PathLike[str], mounts: str | None = None) -> str | None:
    """Return the file system type of ``path`` if it is a network/parallel one, else None."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, fstype = "", ""
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, fstype = mount, parts[2]
    return fstype if fstype in NETWORK_FILESYSTEMS else None


def row_step(values: dict[str, Any]) -> int | None:
    """Return the step of a metric row: its first whole step key in SQLite's range, else None."""
    for key in _STEP_KEYS:
        value = values.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and -2**63 <= value < 2**63:  # SQLite's INTEGER range
            return value
    return None


def finite(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
