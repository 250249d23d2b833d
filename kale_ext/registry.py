"""The registry: small JSON documents in the state directory that outlive processes.

Any kernel, the ``kale`` command line and the Jupyter server find clusters and
searches here. Every file is private to the user (0600) and written atomically.

The same module holds the rule for every folder and file kale keeps secrets or pickles
in (registry, stores, checkpoints, channel and TLS files): folders are 0700 and files
0600, owned by the user who runs kale. A looser mode that only lets others read is
tightened; one that lets others write, or another owner, is refused before anything is
read, since whoever can write there can plant a record, a store or a pickle that runs
code as this user.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kale_ext import config
from kale_ext._errors import KaleError


class UnsafePathError(KaleError, PermissionError):
    """A folder or file that should be the user's alone is not (another owner, others write)."""


def _owner(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _refuse_unsafe(path: Path, st: os.stat_result, what: str, kind: str) -> None:
    me = os.geteuid()
    mode = stat.S_IMODE(st.st_mode)
    shown = f"{what} {path} (owner {_owner(st.st_uid)}, mode {mode:04o})"
    if st.st_uid != me:
        raise UnsafePathError(
            f"{shown} belongs to another user, not to {_owner(me)}: kale only reads its "
            f"registry, stores, checkpoints and keys from {kind}s of its own user. Use a "
            f"{kind} of your own (move or copy it), or have its owner hand it over "
            f"(chown {_owner(me)} {path}).")
    if mode & 0o022:
        raise UnsafePathError(
            f"{shown} is writable by its group or by everyone, so another user could have "
            f"planted what kale would read from it (code runs from pickles and records). "
            f"Check its contents, then make it private: chmod "
            f"{'700' if kind == 'folder' else '600'} {path}.")


def private_folder(path: str | os.PathLike[str], *, what: str = "Folder") -> Path:
    """Create ``path`` as an owner-only folder (0700), or make sure an existing one is.

    An existing folder that others may only read or enter is tightened to 0700.

    Parameters
    ----------
    path
        The folder; its missing parents are created 0700 too.
    what
        What the folder is, for the error message (``"Search store folder"``).

    Raises
    ------
    UnsafePathError
        When the folder belongs to another user or others may write to it.
    """
    path = Path(path)
    for folder in [*reversed(path.parents), path]:
        if not folder.exists():
            folder.mkdir(exist_ok=True, mode=0o700)
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{what} {path} is not a folder; move that file away.")
    _refuse_unsafe(path, st, what, "folder")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def private_file(path: str | os.PathLike[str], *, what: str = "File") -> Path:
    """Make sure the existing file ``path`` is its user's alone (0600) before reading it.

    A file others may only read is tightened to 0600; nothing happens when it is missing.

    Raises
    ------
    UnsafePathError
        When the file belongs to another user or others may write to it.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return path
    _refuse_unsafe(path, st, what, "file")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
    return path


def safe_parent(path: str | os.PathLike[str], *, what: str = "Folder") -> Path:
    """Check a folder the user chose (it is not tightened) before a private file goes in.

    It may belong to the user or to root; others may write to it only when its sticky bit
    is set (``/tmp``), which keeps them from replacing the user's files.

    Raises
    ------
    UnsafePathError
        When another user owns the folder or may replace files in it.
    """
    path = Path(path)
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    foreign = st.st_uid not in (os.geteuid(), 0)
    if foreign or (mode & 0o022 and not mode & stat.S_ISVTX):
        _refuse_unsafe(path, st, what, "folder")
    return path


def guard_file(path: str | os.PathLike[str], *, what: str, own_folder: bool = False,
               create: bool = False, sidecars: tuple[str, ...] = ()) -> Path:
    """Check a private file and its folder before kale reads, creates or unpickles it.

    Parameters
    ----------
    path
        The file (it need not exist yet).
    what
        What it is, for error messages (``"Search store"``).
    own_folder
        The folder is kale's own (the default store folder): it is created or tightened
        to 0700. Otherwise it is the user's choice: created 0700 when missing and
        ``create`` is set, else only checked with :func:`safe_parent`.
    sidecars
        Suffixes of files that go with it (``"-wal"``), checked like it when present.

    Raises
    ------
    UnsafePathError
        When the file, a sidecar or the folder belongs to another user or others may
        write to it.
    """
    path = Path(path)
    folder = path.parent
    if own_folder or (create and not folder.exists()):
        private_folder(folder, what=f"{what} folder")
    elif folder.exists():
        safe_parent(folder, what=f"{what} folder")
    for file in (path, *(path.with_name(path.name + s) for s in sidecars)):
        private_file(file, what=what)
    return path


def kind_dir(kind: str) -> Path:
    """Return the folder holding records of one kind (``clusters`` or ``searches``)."""
    private_folder(config.state_dir(), what="Kale state folder")
    return private_folder(config.state_dir() / kind, what="Kale registry folder")


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
    path = private_file(kind_dir(kind) / f"{record_id}.json", what="Registry record")
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
            private_file(path, what="Registry record")
            yield json.loads(path.read_text())
        except UnsafePathError:
            raise
        except (OSError, json.JSONDecodeError):
            continue


def private_dir(kind: str, record_id: str) -> Path:
    """Return a 0700 folder for a record's secrets (TLS certificates, keys)."""
    return private_folder(kind_dir(kind) / record_id, what="Kale private folder")


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
