"""A rank's slice of ROOT files, streamed in batches (see :func:`kale_ext.models.root_dataset`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from kale_ext._errors import ConfigError
from kale_ext.models._root import Piece, pieces, shard_range

if TYPE_CHECKING:
    from kale_ext.models._root import Reader


class RootStream(torch.utils.data.IterableDataset):
    """Batches of one rank's entries, read chunk by chunk from its files on each pass.

    Iterating yields ``(x, y)`` (or ``(x,)``) tensors of ``batch_size`` rows; a batch may
    span two chunks or two files. Use it directly, ``for x, y in stream``, or in a
    ``DataLoader(stream, batch_size=None)``: with ``num_workers`` > 1 the loader's
    workers split the rank's entries among themselves. ``len(stream)`` is its number of
    batches, ``stream.num_entries`` its number of rows.
    """

    def __init__(self, reader: Reader, parts: Sequence[Piece], tree: str, *,
                 batch_size: int = 256, step_size: int | str = "50 MB",
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False) -> None:
        super().__init__()
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
        self.reader, self.parts, self.tree = reader, list(parts), tree
        self.batch_size, self.step_size = int(batch_size), step_size
        self.shuffle, self.seed, self.drop_last, self.epoch = shuffle, int(seed), drop_last, 0
        self.num_entries = sum(stop - start for _, start, stop in self.parts)

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffling within chunks for ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        full, rest = divmod(self.num_entries, self.batch_size)
        return full if self.drop_last or not rest else full + 1

    def _mine(self) -> list[Piece]:
        """Return this DataLoader worker's part of the rank's pieces.

        Without DataLoader workers, that is all of them.
        """
        info = torch.utils.data.get_worker_info()
        if info is None or info.num_workers == 1:
            return self.parts
        files = [path for path, _, _ in self.parts]
        counts = [stop - start for _, start, stop in self.parts]
        lo, hi = shard_range(0, self.num_entries, info.id, info.num_workers)
        starts = {i: start for i, (_, start, _) in enumerate(self.parts)}
        local = pieces([str(i) for i in range(len(files))], counts, lo, hi)
        return [(files[int(i)], starts[int(i)] + a, starts[int(i)] + b) for i, a, b in local]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        size = self.batch_size
        rest_x: np.ndarray | None = None
        rest_y: np.ndarray | None = None
        for x, y in self.reader.chunks(self._mine(), self.tree, self.step_size):
            if self.shuffle:
                order = rng.permutation(len(x))
                x, y = x[order], (None if y is None else y[order])
            if rest_x is not None and len(rest_x):  # fewer than a batch left over
                x = np.concatenate([rest_x, x])
                y = None if y is None or rest_y is None else np.concatenate([rest_y, y])
            full = len(x) // size * size
            for i in range(0, full, size):  # views of the chunk: no copies
                yield self._batch(x[i:i + size], None if y is None else y[i:i + size])
            rest_x, rest_y = x[full:], (None if y is None else y[full:])
        if rest_x is not None and len(rest_x) and not self.drop_last:
            yield self._batch(rest_x, rest_y)

    @staticmethod
    def _batch(x: np.ndarray, y: np.ndarray | None) -> tuple[torch.Tensor, ...]:
        tensors = (torch.from_numpy(np.ascontiguousarray(x)),)
        return tensors if y is None else (*tensors, torch.from_numpy(np.ascontiguousarray(y)))
