"""ROOT TTrees as torch datasets through uproot (no ROOT installation needed).

Scalar branches become columns; fixed-size array branches (``float[16]``) become as
many columns; per-pixel branches are picked with a glob (``"pix_*"``, sorted by their
number, so ``pix_10`` follows ``pix_9``); jagged branches (``double[]``) are padded or
truncated to ``pad_to`` values. The columns are concatenated in the order given and may
be reshaped to an image.

A dataset may span many files (a glob such as ``"data/run_*.root"``, a list, or an
XRootD ``root://`` URL): their entries are taken in file order as one sequence.
``shard=(rank, world_size)`` gives each rank a contiguous, disjoint slice of that
sequence; together the ranks cover every entry exactly once. Only each file's header
is read to count entries; a rank then reads only its own entries, a chunk
(``step_size``) at a time, with uproot's iterate over each file's part of the slice:
:func:`root_dataset` with ``stream=True`` never holds more than a chunk and a batch.
"""

from __future__ import annotations

import fnmatch
import glob
import math
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from kale_ext._errors import ConfigError

Piece = tuple[str, int, int]  # (file, entry_start, entry_stop) of one file


def shard_range(start: int, stop: int, rank: int, world_size: int) -> tuple[int, int]:
    """Split ``[start, stop)``: the entries ``[lo, hi)`` rank ``rank`` of ``world_size`` reads.

    Contiguous blocks whose sizes differ by at most one, in rank order.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"shard must be (rank, world_size) with 0 <= rank < world_size, "
                          f"but got ({rank}, {world_size})")
    n = stop - start
    return start + n * rank // world_size, start + n * (rank + 1) // world_size


def _auto_shard() -> tuple[int, int]:
    """(rank, world_size) of torch.distributed, else of the kale run or RANK/WORLD_SIZE."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:
        pass
    from kale_ext.training import rank, world_size

    return rank(), world_size()


def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def root_files(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """Return the files a ROOT source names: a path, a glob (natural order), a list, URLs.

    ``root://`` (XRootD) and other URLs are passed to uproot as they are.
    """
    if not isinstance(path, str | os.PathLike):
        return [f for p in path for f in root_files(p)]
    text = os.fspath(path)
    if re.match(r"^[a-z][a-z0-9+.-]*://", text) and not text.startswith("file://"):
        return [text]
    text = text.removeprefix("file://")
    if glob.has_magic(text):
        found = sorted(glob.glob(text), key=_natural)
        if not found:
            raise ConfigError(f"no ROOT file matches {text!r}")
        return found
    if not os.path.exists(text):
        raise ConfigError(f"no ROOT file at {text!r}")
    return [text]


def _open(path: str) -> Any:
    import uproot

    try:
        return uproot.open(path)
    except FileNotFoundError as e:
        raise ConfigError(f"no ROOT file at {path!r}") from e
    except ModuleNotFoundError as e:  # root:// needs XRootD's Python bindings
        raise ConfigError(f"reading {path!r} needs {e.name}: pip install fsspec-xrootd "
                          "(XRootD), or copy the file to a local disk") from e


def _tree(file: Any, path: str, tree: str) -> Any:
    try:
        return file[tree]
    except KeyError as e:
        raise ConfigError(f"{path!r} has no tree {tree!r}; it holds "
                          f"{file.keys(cycle=False)}") from e


def root_entries(files: Sequence[str], tree: str) -> list[int]:
    """Each file's number of entries in ``tree`` (only the headers are read)."""
    counts = []
    for path in files:
        with _open(path) as file:
            counts.append(int(_tree(file, path, tree).num_entries))
    return counts


def pieces(files: Sequence[str], counts: Sequence[int], start: int, stop: int) -> list[Piece]:
    """Return the per-file entry ranges covering ``[start, stop)`` of the joint entries."""
    out: list[Piece] = []
    offset = 0
    for path, n in zip(files, counts, strict=True):
        lo, hi = max(start - offset, 0), min(stop - offset, n)
        if lo < hi:
            out.append((path, lo, hi))
        offset += n
    return out


def expand_branches(available: Sequence[str], patterns: str | Sequence[str]) -> list[str]:
    """Branch names matching ``patterns`` (exact names or globs), in order, each once."""
    if isinstance(patterns, str):
        patterns = [patterns]
    names: list[str] = []
    for pattern in patterns:
        if pattern in available:
            matched = [pattern]
        else:
            matched = sorted(fnmatch.filter(available, pattern), key=_natural)
        if not matched:
            raise ConfigError(f"branch {pattern!r} matches nothing in the tree; its branches "
                              f"are {sorted(available)}")
        names += [m for m in matched if m not in names]
    return names


def _columns(array: Any, name: str, pad_to: int | None, pad_value: float) -> np.ndarray:
    import awkward as ak

    width = None
    if "var" in str(ak.type(array)):
        if pad_to is None:
            raise ConfigError(f"branch {name!r} is jagged ({ak.type(array)}); pass pad_to=N "
                              "to pad or truncate it to N values per entry")
        array = ak.fill_none(ak.pad_none(array, pad_to, axis=1, clip=True), pad_value)
        width = int(pad_to)
    values = np.asarray(ak.to_numpy(array))
    # the width from the type, not -1: an empty chunk must still give (0, width)
    width = math.prod(values.shape[1:]) if width is None else width
    return values.reshape(len(values), width).astype(np.float32, copy=False)


class Reader:
    """Turns a tree's branches into (x, y) numpy chunks: the columns, shape and label."""

    def __init__(self, names: list[str], label: str | None,
                 image_shape: Sequence[int] | None, pad_to: int | None,
                 pad_value: float) -> None:
        self.names, self.label, self.pad_to, self.pad_value = names, label, pad_to, pad_value
        self.image_shape = None if image_shape is None else tuple(int(d) for d in image_shape)
        self.wanted = [*names, label] if label is not None and label not in names else names

    def convert(self, arrays: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """One chunk of ``tree.iterate``/``tree.arrays`` output as (x, y)."""
        columns = [_columns(arrays[n], n, self.pad_to, self.pad_value) for n in self.names]
        x = columns[0] if len(columns) == 1 else np.concatenate(columns, axis=1)
        if self.image_shape is not None:
            if math.prod(self.image_shape) != x.shape[1]:
                raise ConfigError(f"image_shape {self.image_shape} holds "
                                  f"{math.prod(self.image_shape)} values but branches "
                                  f"{self.names} give {x.shape[1]} per entry")
            x = x.reshape(len(x), *self.image_shape)
        if self.label is None:
            return x, None
        y = np.asarray(arrays[self.label])
        if y.ndim != 1:
            raise ConfigError(f"label branch {self.label!r} must hold one value per entry, "
                              f"got shape {y.shape}")
        return x, y.astype(np.int64 if y.dtype.kind in "iub" else np.float32)

    def chunks(self, parts: Sequence[Piece], tree: str,
               step_size: int | str) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(x, y) chunks of the entries in ``parts``, read ``step_size`` at a time."""
        for path, start, stop in parts:
            with _open(path) as file:
                ttree = _tree(file, path, tree)
                for arrays in ttree.iterate(self.wanted, entry_start=start, entry_stop=stop,
                                            step_size=step_size, library="ak"):
                    yield self.convert(arrays)

    def empty(self, path: str, tree: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Return a chunk of no entries, with the right widths and dtypes."""
        with _open(path) as file:
            return self.convert(_tree(file, path, tree).arrays(self.wanted, entry_start=0,
                                                                entry_stop=0, library="ak"))


def root_dataset(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], tree: str,
                 branches: str | Sequence[str], label: str | None = None, *,
                 image_shape: Sequence[int] | None = None, pad_to: int | None = None,
                 pad_value: float = 0.0, entry_start: int | None = None,
                 entry_stop: int | None = None, shard: tuple[int, int] | str | None = None,
                 stream: bool = False, batch_size: int = 256, step_size: int | str = "50 MB",
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False) -> Any:
    """Read branches of ROOT TTrees into a torch dataset, all at once or streamed.

    Parameters
    ----------
    path, tree
        A ROOT file, a glob (``"data/run_*.root"``, in natural order), a list of them
        or an XRootD ``root://`` URL; and the tree's name (``"dir/tree"`` for a
        subdirectory), the same in every file.
    branches
        Branch names or globs, e.g. ``["met", "ht"]`` or ``"pix_*"``; their values are
        concatenated into one float32 feature vector per entry.
    label
        A scalar branch for the target: int64 if it holds integers or booleans,
        float32 otherwise.
    image_shape
        Reshape each feature vector to this shape, e.g. ``(1, 32, 32)``.
    pad_to, pad_value
        Jagged branches are padded with ``pad_value`` or truncated to ``pad_to`` values.
    entry_start, entry_stop
        The range of entries to read (default: all), counted across the files.
    shard
        ``(rank, world_size)``: read only this rank's contiguous slice of the range;
        ``"auto"`` takes them from torch.distributed, the kale run or RANK/WORLD_SIZE.
    stream
        False: read the slice into a ``TensorDataset``. True: a :class:`RootStream`
        that reads it chunk by chunk each time it is iterated and yields batches.
    batch_size, step_size, shuffle, seed, drop_last
        For ``stream=True``: rows per batch, entries (or bytes, "50 MB") per read,
        shuffling within each chunk (reseeded by ``set_epoch``), and dropping a last
        short batch.

    Returns
    -------
    torch.utils.data.TensorDataset or RootStream
        ``(x,)`` or ``(x, y)``; ``dataset.tensors`` gives a TensorDataset's tensors.
    """
    import torch

    from kale_ext.models._root_stream import RootStream

    files = root_files(path)
    counts = root_entries(files, tree)
    with _open(files[0]) as file:
        available = list(_tree(file, files[0], tree).keys())
    names = expand_branches(available, branches)
    if label is not None and label not in available:
        raise ConfigError(f"label branch {label!r} is not in the tree; its branches are "
                          f"{sorted(available)}")
    total = sum(counts)
    start = 0 if entry_start is None else int(entry_start)
    stop = total if entry_stop is None else min(int(entry_stop), total)
    if not 0 <= start <= stop:
        raise ConfigError(f"entry_start={entry_start} and entry_stop={entry_stop} do not "
                          f"give a range within the {total} entries of {len(files)} file(s)")
    if shard is not None:
        if isinstance(shard, str) and shard != "auto":
            raise ConfigError(f"shard must be (rank, world_size) or 'auto', got {shard!r}")
        rank, world = _auto_shard() if isinstance(shard, str) else shard
        start, stop = shard_range(start, stop, int(rank), int(world))
    reader = Reader(names, label, image_shape, pad_to, pad_value)
    parts = pieces(files, counts, start, stop)
    if stream:
        return RootStream(reader, parts, tree, batch_size=batch_size, step_size=step_size,
                          shuffle=shuffle, seed=seed, drop_last=drop_last)
    chunks = list(reader.chunks(parts, tree, step_size)) or [reader.empty(files[0], tree)]
    x = np.concatenate([c[0] for c in chunks])
    tensors = [torch.from_numpy(x)]
    if label is not None:
        tensors.append(torch.from_numpy(np.concatenate([c[1] for c in chunks])))
    return torch.utils.data.TensorDataset(*tensors)
