"""ROOT TTrees as torch datasets through uproot (no ROOT installation needed).

Scalar branches become columns; fixed-size array branches (``float[16]``) become as
many columns; per-pixel branches are picked with a glob (``"pix_*"``, sorted by their
number, so ``pix_10`` follows ``pix_9``); jagged branches (``double[]``) are padded or
truncated to ``pad_to`` values. The columns are concatenated in the order given and may
be reshaped to an image. ``shard=(rank, world_size)`` gives each rank a contiguous,
disjoint slice of the entries; together the ranks cover every entry exactly once.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from kale_ext._errors import ConfigError


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
    """(rank, world_size) of the running torch.distributed group, or of RANK/WORLD_SIZE."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


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
    # the width from the type, not -1: an empty shard must still give (0, width)
    width = math.prod(values.shape[1:]) if width is None else width
    return values.reshape(len(values), width).astype(np.float64)


def root_dataset(path: str | os.PathLike[str], tree: str, branches: str | Sequence[str],
                 label: str | None = None, *, image_shape: Sequence[int] | None = None,
                 pad_to: int | None = None, pad_value: float = 0.0,
                 entry_start: int | None = None, entry_stop: int | None = None,
                 shard: tuple[int, int] | str | None = None) -> Any:
    """Read branches of a ROOT TTree into a ``torch.utils.data.TensorDataset``.

    Parameters
    ----------
    path, tree
        The ROOT file and the tree's name in it (``"dir/tree"`` for a subdirectory).
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
        The range of entries to read (default: all).
    shard
        ``(rank, world_size)``: read only this rank's contiguous slice of the range;
        ``"auto"`` takes them from torch.distributed or the RANK/WORLD_SIZE variables.

    Returns
    -------
    torch.utils.data.TensorDataset
        ``(x,)`` or ``(x, y)``; ``dataset.tensors`` gives the tensors themselves.
    """
    import torch
    import uproot

    try:
        file = uproot.open(path)
    except FileNotFoundError as e:
        raise ConfigError(f"no ROOT file at {os.fspath(path)!r}") from e
    with file:
        try:
            ttree = file[tree]
        except KeyError as e:
            raise ConfigError(f"{os.fspath(path)!r} has no tree {tree!r}; it holds "
                              f"{file.keys(cycle=False)}") from e
        available = list(ttree.keys())
        names = expand_branches(available, branches)
        if label is not None and label not in available:
            raise ConfigError(f"label branch {label!r} is not in the tree; its branches are "
                              f"{sorted(available)}")
        total = int(ttree.num_entries)
        start = 0 if entry_start is None else int(entry_start)
        stop = total if entry_stop is None else min(int(entry_stop), total)
        if not 0 <= start <= stop:
            raise ConfigError(f"entry_start={entry_start} and entry_stop={entry_stop} do not "
                              f"give a range within the tree's {total} entries")
        if shard is not None:
            if isinstance(shard, str) and shard != "auto":
                raise ConfigError(f"shard must be (rank, world_size) or 'auto', got {shard!r}")
            rank, world = _auto_shard() if isinstance(shard, str) else shard
            start, stop = shard_range(start, stop, int(rank), int(world))
        wanted = [*names, label] if label is not None and label not in names else names
        arrays = ttree.arrays(wanted, entry_start=start, entry_stop=stop, library="ak")
    x = np.concatenate([_columns(arrays[n], n, pad_to, pad_value) for n in names], axis=1)
    if image_shape is not None:
        shape = tuple(int(d) for d in image_shape)
        if math.prod(shape) != x.shape[1]:
            raise ConfigError(f"image_shape {shape} holds {math.prod(shape)} values but "
                              f"branches {names} give {x.shape[1]} per entry")
        x = x.reshape(len(x), *shape)
    tensors = [torch.from_numpy(x.astype(np.float32))]
    if label is not None:
        y = np.asarray(arrays[label])
        if y.ndim != 1:
            raise ConfigError(f"label branch {label!r} must hold one value per entry, got "
                              f"shape {y.shape}")
        integral = y.dtype.kind in "iub"
        tensors.append(torch.from_numpy(y.astype(np.int64 if integral else np.float32)))
    return torch.utils.data.TensorDataset(*tensors)
