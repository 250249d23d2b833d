"""The registry: small JSON documents in the state directory that outlive processes.

Any kernel, the ``kale`` command line and the Jupyter server find clusters and
searches here. Every file is private to the user (0600) and written atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kale_ext import config
from kale_ext._errors import KaleError


def kind_dir(kind: str) -> Path:
    """Return the folder holding records of one kind (``clusters`` or ``searches``)."""
    path = config.state_dir() / kind
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def write(kind: str, record_id: str, data: dict[str, Any]) -> Path:
    """Atomically write record ``record_id``; the file is readable by its owner only."""
    folder = kind_dir(kind)
    target = folder / f"{record_id}.json"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{record_id}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read(kind: str, record_id: str) -> dict[str, Any] | None:
    """Record ``record_id`` or None when there is none."""
    path = kind_dir(kind) / f"{record_id}.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise KaleError(f"Registry record {path} is not valid JSON ({e}); delete it.") from e
    return data


def remove(kind: str, record_id: str) -> None:
    """Delete record ``record_id``; nothing happens when there is none."""
    (kind_dir(kind) / f"{record_id}.json").unlink(missing_ok=True)


def records(kind: str) -> Iterator[dict[str, Any]]:
    """Every readable record of one kind, oldest first."""
    paths = sorted(kind_dir(kind).glob("*.json"), key=lambda p: p.stat().st_mtime)
    for path in paths:
        try:
            yield json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue


def private_dir(kind: str, record_id: str) -> Path:
    """Return a 0700 folder for a record's secrets (TLS certificates, keys)."""
    path = kind_dir(kind) / record_id
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def pid_alive(pid: int, host: str) -> bool | None:
    """Whether process ``pid`` lives; None when it ran on another host (cannot tell)."""
    import socket

    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but its parent has not reaped it yet (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False
