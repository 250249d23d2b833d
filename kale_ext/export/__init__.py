"""Searches and training runs, exported to the tools physicists compare runs in.

:func:`export` reads a search's store once and writes every trial with its params, every
metric row with its step, the trials' states with their reasons, the best trial and the
checkpoints' paths to one target:

- ``"tensorboard"``: a run per trial, with the HParams tab filled (``dir=``);
- ``"mlflow"``: a parent run per search, a child run per trial (``uri=`` or ``dir=``);
- ``"optuna"``: a study in an Optuna storage, for ``optuna.load_study`` and
  optuna-dashboard (``uri=`` or ``dir=``);
- ``"parquet"``, ``"csv"``: a trials table and a metrics table (``dir=``).

:func:`live_log` (``Search(..., log_to="tensorboard:DIR")``) keeps a TensorBoard log of a
running search up to date from its driver. Each target's library is imported on first
use; ``pip install 'kale-ext[export]'`` installs them all.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kale_ext import registry
from kale_ext._errors import ConfigError, StoreError
from kale_ext.export._data import SearchData, TrialData, read
from kale_ext.export._deps import EXTRA, MissingDependency
from kale_ext.export._live import LiveLog, live_log, log_folder
from kale_ext.export._tensorboard import MARKER
from kale_ext.store import Store
from kale_ext.trial import open_store

TARGETS = ("tensorboard", "mlflow", "optuna", "parquet", "csv")
"""The names :func:`export` takes as ``to=``."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TAKES = {"tensorboard": {"dir"}, "parquet": {"dir"}, "csv": {"dir"},
          "mlflow": {"dir", "uri", "experiment", "artifacts"}, "optuna": {"dir", "uri"}}


@dataclass(frozen=True)
class Exported:
    """Where an export went and what it holds.

    Attributes
    ----------
    target : str
        One of :data:`TARGETS`.
    location : str
        The TensorBoard log dir, the MLflow tracking URI, the Optuna storage (a database
        URL or a journal file) or the folder of the tables.
    name : str
        The search's name: its TensorBoard folder, MLflow parent run and Optuna study.
    trials, rows : int
        How many trials and metric rows were written.
    paths : tuple of str
        The files or folders written (the tables; the trials' TensorBoard runs).
    run_id : str or None
        MLflow's parent run.
    """

    target: str
    location: str
    name: str
    trials: int
    rows: int
    paths: tuple[str, ...] = field(default_factory=tuple)
    run_id: str | None = None

    def hint(self) -> str:
        """How to open the export in its tool."""
        if self.target == "tensorboard":
            return f"tensorboard --logdir {self.location}"
        if self.target == "mlflow":
            return f"mlflow ui --backend-store-uri {self.location}"
        if self.target == "optuna":
            return f"optuna-dashboard {self.location}"
        return ", ".join(self.paths)

    def __str__(self) -> str:
        """Say what was exported where, and how to open it."""
        return (f"exported {self.trials} trials and {self.rows} metric rows of {self.name!r} "
                f"to {self.target}: {self.hint()}")


def _check_options(to: Any, given: dict[str, Any]) -> None:
    if not isinstance(to, str) or to not in TARGETS:
        raise ConfigError(f"export(to={to!r}): unknown target; to= must be one of "
                          f"{', '.join(map(repr, TARGETS))}.")
    extra = sorted(k for k, v in given.items() if v not in (None, False) and k not in _TAKES[to])
    if extra:
        raise ConfigError(
            f"export(to={to!r}) takes {', '.join(sorted(_TAKES[to]))}, not "
            f"{', '.join(f'{k}={given[k]!r}' for k in extra)}; drop "
            f"{'it' if len(extra) == 1 else 'them'} or pick the target that takes "
            f"{'it' if len(extra) == 1 else 'them'}.")


def _folder(to: str, dir: Any, *, required: bool) -> Path | None:
    if dir is None:
        if required:
            raise ConfigError(f"export(to={to!r}) writes files and needs dir=, the folder to "
                              f"write them in, e.g. export(search, to={to!r}, dir='exports').")
        return None
    if not isinstance(dir, str | os.PathLike) or not os.fspath(dir):
        raise ConfigError(f"export(to={to!r}, dir={dir!r}): dir must be a folder path (a str "
                          "or pathlib.Path).")
    path = Path(os.fspath(dir)).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"export(to={to!r}, dir={os.fspath(dir)!r}): {path} is a file, not a "
                          "folder; pass a folder (it is created when missing).")
    return path


def _store_path(value: str | os.PathLike[str]) -> Path:
    """Find the store at a path, or of a search or training run registered by that name."""
    text = os.fspath(value)
    path = Path(text).expanduser()
    if not path.exists() and isinstance(text, str) and _NAME.match(text):
        for kind in ("searches", "runs"):
            record = registry.read(kind, text)
            if record and record.get("store"):
                return Path(record["store"])
    return path


@contextmanager
def _opened(source: Any) -> Iterator[tuple[Store, str | None]]:
    """Yield the store behind ``source`` and its path; close a store opened here."""
    rule = ("export takes a kale.Search, a TrainingRun, a kale_ext.store.Store, the path of "
            "a .kale.sqlite store or the name of a registered search (`kale search list`)")
    store = getattr(source, "store", source)  # a Search or a TrainingRun holds its store
    if isinstance(store, Store):
        path = getattr(store, "path", None)
        yield store, None if path is None else str(path)
        return
    if not isinstance(source, str | os.PathLike):
        raise ConfigError(f"export({source!r}): not a search or a store; {rule}.")
    path = _store_path(source)
    if not path.is_file():
        raise ConfigError(f"export({os.fspath(source)!r}): no store at {path} "
                          f"({'a folder' if path.is_dir() else 'no such file'}); {rule}.")
    try:
        opened = open_store(path, readonly=True)
    except (StoreError, sqlite3.Error, OSError) as e:
        raise ConfigError(f"export({os.fspath(source)!r}): {path} is not a kale store ({e}); "
                          f"{rule}.") from e
    try:
        yield opened, str(path.resolve())
    finally:
        opened.close()


def _read(source: Any, store: Store, path: str | None) -> SearchData:
    try:
        return read(store, path)
    except (StoreError, sqlite3.Error) as e:
        raise ConfigError(f"export({source!r}): the store could not be read ({e}); a store "
                          "holds a search once kale.Search(...) created it.") from e


def export(store_or_path: Any, to: str, *, dir: str | os.PathLike[str] | None = None,
           uri: str | os.PathLike[str] | None = None, name: str | None = None,
           experiment: str | None = None, artifacts: bool = False) -> Exported:
    """Export a search (or a training run) to TensorBoard, MLflow, Optuna, Parquet or CSV.

    Parameters
    ----------
    store_or_path
        A :class:`kale.Search`, a :class:`~kale_ext.training.TrainingRun`, a
        :class:`kale_ext.store.Store`, the path of a ``.kale.sqlite`` store, or the name
        of a search or run in the registry. A running search exports what it holds now.
    to
        ``"tensorboard"``, ``"mlflow"``, ``"optuna"``, ``"parquet"`` or ``"csv"``.
    dir
        The folder to write into: TensorBoard writes ``DIR/<name>/trial-0007/``, the
        tables ``DIR/<name>.trials.<ext>`` and ``DIR/<name>.metrics.<ext>``; without
        ``uri``, MLflow writes ``DIR/mlflow.db`` and Optuna ``DIR/optuna.db``.
    uri
        MLflow: a tracking URI (``sqlite:///PATH.db`` or a ``.db`` path, ``file:///DIR``,
        an ``http(s)://`` server). Optuna: a storage (``sqlite:///PATH.db``, a ``.db``
        path, any SQLAlchemy URL, or a journal file ending in ``.log``).
    name
        The name to export under (folder, parent run, study, table prefix); default: the
        search's. Exporting under the same name again replaces the earlier export.
    experiment
        MLflow: the experiment holding the search's parent run; default ``"kale"``.
    artifacts
        MLflow: also copy each trial's latest checkpoint (and the parent run's
        definition) as artifacts; by default only their paths are recorded, as tags.

    Returns
    -------
    Exported
        Where it went, with how to open it (``print`` it).

    Raises
    ------
    ConfigError
        An unknown target, a missing or misplaced ``dir``/``uri``, or no store at the path.
    MissingDependency
        The target's library is not installed; the message names the extra to install.
    """
    _check_options(to, {"dir": dir, "uri": uri, "experiment": experiment,
                        "artifacts": artifacts})
    if name is not None and (not isinstance(name, str) or not _NAME.match(name)):
        raise ConfigError(f"export(name={name!r}): a name is 1-128 letters, digits, '.', '_' "
                          "or '-', starting with a letter or digit.")
    if experiment is not None and (not isinstance(experiment, str) or not experiment.strip()):
        raise ConfigError(f"export(experiment={experiment!r}): the MLflow experiment must be "
                          "a non-empty name.")
    folder = _folder(to, dir, required=to not in ("mlflow", "optuna"))
    location = ""
    if to == "mlflow":
        from kale_ext.export import _mlflow

        location = _mlflow.tracking_uri(uri, folder)
    elif to == "optuna":
        from kale_ext.export import _optuna

        location = _optuna.storage_location(uri, folder)
    with _opened(store_or_path) as (store, path):
        data = _read(store_or_path, store, path)
    label = name or data.name
    if not _NAME.match(label):
        raise ConfigError(f"export: the name {label!r} cannot name files; pass name= (1-128 "
                          "letters, digits, '.', '_' or '-').")
    written: list[Path] = []
    run_id = None
    if to == "tensorboard":
        from kale_ext.export import _tensorboard

        assert folder is not None
        root = _tensorboard.prepare_root(folder, label)
        location = str(root.resolve())
        written = _tensorboard.write(data, root)
    elif to == "mlflow":
        run_id = _mlflow.write(_renamed(data, label), location,
                               experiment=experiment or "kale", artifacts=artifacts)
    elif to == "optuna":
        _optuna.write(data, location, study_name=label)
    else:
        from kale_ext.export import _table

        assert folder is not None
        location = str(folder.resolve())
        written = _table.write(_renamed(data, label), folder, fmt=to)
    return Exported(to, location, label, len(data.trials), len(data.rows),
                    tuple(str(p) for p in written), run_id)


def _renamed(data: SearchData, name: str) -> SearchData:
    from dataclasses import replace

    return data if data.name == name else replace(data, name=name)


__all__ = [
    "EXTRA",
    "MARKER",
    "TARGETS",
    "Exported",
    "LiveLog",
    "MissingDependency",
    "SearchData",
    "TrialData",
    "export",
    "live_log",
    "log_folder",
    "read",
]
