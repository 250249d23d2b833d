"""Live TensorBoard logging of a running search, written by its driver.

The driver calls :meth:`LiveLog.update` from its loop and :meth:`LiveLog.close` when
the search ends, or has :meth:`LiveLog.follow` do both in a thread beside it; trials
never write event files themselves. Each update reads what the
store gained since the last one (new trials, metric rows after the last row id, state
changes), so the log follows the store, never the other way round. The layout is the one
:func:`kale_ext.export.export` writes (``DIR/<search>/trial-0007/``); without an
HParams experiment written up front, TensorBoard's HParams tab infers it from the
trials' sessions. A later export to the same folder replaces the live log with the full
record.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kale_ext._errors import ConfigError
from kale_ext.export import _tensorboard as tb
from kale_ext.export._data import TrialData, rows_since, scalar, trials_of

if TYPE_CHECKING:
    from kale_ext.store import Store

logger = logging.getLogger(__name__)

_FINISHED = ("completed", "pruned", "stopped", "failed")


class LiveLog:
    """A search's TensorBoard log, brought up to date with its store by the driver.

    Parameters
    ----------
    dir
        The log folder; the search's trials go to ``DIR/<name>/trial-0007/``.
    name
        The search's name.
    every
        Seconds between two updates; more frequent calls return at once.

    Raises
    ------
    MissingDependency
        When torch or tensorboard is missing (``pip install 'kale-ext[export]'``).
    ConfigError
        When ``DIR/<name>`` holds files an export did not write.
    """

    def __init__(self, dir: str | os.PathLike[str], name: str, *, every: float = 2.0) -> None:
        self._writer_class = tb.summary_writer()
        self.root = tb.prepare_root(Path(dir).expanduser(), name,
                                    what=f"log_to='tensorboard:{os.fspath(dir)}'")
        self.every = every
        self._since = 0
        self._writers: dict[int, Any] = {}
        self._written: dict[int, tuple[str, int]] = {}  # trial -> (state, attempt) logged
        self._metric: str | None = None
        self._last = -math.inf
        self._broken = False

    def update(self, store: Store, *, force: bool = False) -> None:
        """Write what ``store`` gained since the last update (at most every ``every`` s).

        A failure to write is logged once and ends the live log; the search goes on.
        """
        now = time.monotonic()
        if self._broken or (not force and now - self._last < self.every):
            return
        self._last = now
        try:
            self._update(store)
        except Exception:
            self._broken = True
            logger.warning("Live TensorBoard log %s stopped; the search goes on.", self.root,
                           exc_info=True)

    def follow(self, store: Store, done: threading.Event) -> threading.Thread:
        """Update from ``store`` every ``every`` seconds in a thread until ``done`` is set.

        Then write the last of the store and close the log. For a driver that does not
        call :meth:`update` from its own loop.
        """
        def loop() -> None:
            while not done.wait(self.every):
                self.update(store)
            self.close(store)

        thread = threading.Thread(target=loop, name=f"kale-live-log-{self.root.name}",
                                  daemon=True)
        thread.start()
        return thread

    def close(self, store: Store | None = None) -> None:
        """Write the last of ``store`` and close every event file."""
        if store is not None:
            self.update(store, force=True)
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def _writer(self, trial: TrialData) -> Any:
        writer = self._writers.get(trial.number)
        if writer is None:
            writer = self._writers[trial.number] = self._writer_class(
                log_dir=str(self.root / trial.run_name))
        return writer

    def _update(self, store: Store) -> None:
        if self._metric is None:
            self._metric = store.search()["definition"].get("metric") or ""
        trials = {t.number: t for t in trials_of(store)}
        for trial in trials.values():
            written = self._written.get(trial.number)
            if written is None or written[1] != trial.attempt:  # a new trial or attempt
                kinds = {k: tb.value_kind(scalar(v)) for k, v in trial.flat.items()}
                # kale.state would be the state at the start: the session's end says more.
                self._writer(trial).file_writer.add_summary(
                    tb.session_start(trial, kinds, state=False), walltime=trial.started)
                self._written[trial.number] = ("", trial.attempt)
        rows = rows_since(store, self._since)
        for row in rows:
            if row.trial in trials:
                tb.write_rows(self._writer(trials[row.trial]), [row])
        if rows:
            self._since = rows[-1].rowid
        for trial in trials.values():
            if self._written[trial.number][0] == trial.state:
                continue
            self._written[trial.number] = (trial.state, trial.attempt)
            writer = self._writer(trial)
            if trial.state in _FINISHED:
                tb.write_end(writer, trial, self._metric)
                writer.close()  # finished: its file closes; a restart opens a new one
                del self._writers[trial.number]
            else:
                writer.add_text("kale/state", f"**{trial.state}**: {trial.reason}",
                                walltime=trial.started)
                writer.flush()


def log_folder(spec: Any) -> Path:
    """Return the folder of a live log ``spec``: ``"tensorboard:DIR"`` -> ``DIR``.

    Raises
    ------
    ConfigError
        For a ``spec`` that is not ``"tensorboard:DIR"``.
    """
    if not isinstance(spec, str) or not spec.startswith("tensorboard:") \
            or not spec.removeprefix("tensorboard:").strip():
        raise ConfigError(f"log_to={spec!r}: live logging writes TensorBoard event files; "
                          "pass log_to='tensorboard:DIR' with DIR the log folder, or export "
                          "the search afterwards with search.export(to=...).")
    return Path(spec.removeprefix("tensorboard:")).expanduser()


def live_log(spec: Any, name: str) -> LiveLog:
    """Open the live log ``spec`` names for search ``name``: ``"tensorboard:DIR"``.

    Raises
    ------
    ConfigError
        For a ``spec`` that is not ``"tensorboard:DIR"``.
    """
    return LiveLog(log_folder(spec), name)
