"""Optuna: the search as a study, for ``optuna.load_study`` and optuna-dashboard.

The storage is an RDB (a SQLite file, or any SQLAlchemy URL) or a journal file. The study
is named after the search, its direction follows the search's mode, and its trials are
the search's trials in number order (kale's number also in user attr ``kale.trial``).

States map to Optuna's :class:`~optuna.trial.TrialState` as follows:

- completed -> ``COMPLETE``, valued with the trial's best value of the objective (what
  kale ranks trials by); a completed trial that never reported a finite value of the
  objective becomes ``FAIL``, since Optuna's complete trials need a value;
- pruned (by a scheduler) and stopped (by the user or the search) -> ``PRUNED``: both
  ended early on purpose; valued, as Optuna values pruned trials, with their last
  intermediate value;
- failed -> ``FAIL``; running and paused -> ``RUNNING``; pending -> ``WAITING``.

Kale's own state and its reason stay in user attrs ``kale.state`` and ``kale.reason``.
Parameters carry the distributions of the search space where the stored definition gives
them (uniform, loguniform, int, choice, grid); constants and values outside their domain
get one that holds the values every trial has. Intermediate values are rank 0's rows of
the objective, by step. Optuna's ``best_trial`` counts complete trials only; kale's best
trial, whatever its state, is in the study's user attrs ``kale.best_trial`` and
``kale.best_value``.
"""

from __future__ import annotations

import datetime
import math
import os
from pathlib import Path
from typing import Any

from kale_ext._errors import ConfigError
from kale_ext.export._data import SearchData, TrialData, number, scalar, step_of
from kale_ext.export._deps import require
from kale_ext.export._space import Domain, domains

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")


def storage_location(uri: str | os.PathLike[str] | None, dir: Path | None) -> str:
    """Return the storage to write: a database URL, or the path of a journal file.

    Raises
    ------
    ConfigError
        For neither ``uri=`` nor ``dir=``, or a ``uri`` that names no storage.
    """
    if uri is None:
        if dir is None:
            raise ConfigError(
                "export(to='optuna') needs uri= (an Optuna storage: 'sqlite:///runs/optuna.db' "
                "or a journal file ending in .log) or dir= (it then writes DIR/optuna.db).")
        return f"sqlite:///{(dir / 'optuna.db').resolve()}"
    text = os.fspath(uri)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"export(to='optuna', uri={uri!r}): uri must name an Optuna storage "
                          "such as 'sqlite:///runs/optuna.db' or a journal file ending in .log.")
    if "://" in text:
        return text
    lower = text.lower()
    if lower.endswith(_SQLITE_SUFFIXES):
        return f"sqlite:///{Path(text).expanduser().resolve()}"
    if lower.endswith(_JOURNAL_SUFFIXES):
        return str(Path(text).expanduser().resolve())
    raise ConfigError(
        f"export(to='optuna', uri={text!r}): a path must end in .db, .sqlite or .sqlite3 (an "
        "RDB storage on SQLite) or .log, .journal or .jsonl (a journal file); or pass a "
        "database URL such as 'sqlite:///runs/optuna.db'.")


def open_storage(location: str) -> Any:
    """Open the Optuna storage at ``location`` (as :func:`storage_location` gives it)."""
    optuna = require("optuna", target="optuna", package="optuna")
    if "://" in location:
        if location.startswith("sqlite:///"):
            Path(location.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.RDBStorage(location)
    Path(location).parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(location))


def _distribution(domain: Domain) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if domain.kind == "float":
        return FloatDistribution(domain.low, domain.high, log=domain.log)
    if domain.kind == "int":
        return IntDistribution(int(domain.low), int(domain.high), log=domain.log,
                               step=domain.step)
    return CategoricalDistribution(list(domain.options))


def _time(seconds: float | None) -> datetime.datetime | None:
    return None if seconds is None else datetime.datetime.fromtimestamp(seconds)


def _frozen(data: SearchData, trial: TrialData, space: dict[str, Domain]) -> Any:
    from optuna.trial import FrozenTrial, TrialState

    metric = data.metric
    steps: dict[int, float] = {}
    for row in data.rows_of(trial.number):  # in order: a later attempt's row wins
        if row.rank == 0 and metric in row.values and (x := number(row.values[metric])) \
                is not None:
            steps[step_of(row)] = x
    attrs: dict[str, Any] = {
        "kale.trial": trial.number, "kale.state": trial.state, "kale.reason": trial.reason,
        "kale.error": trial.error, "kale.worker": trial.worker, "kale.attempt": trial.attempt,
        "kale.checkpoint": trial.checkpoint, "kale.checkpoints": list(trial.checkpoints),
        "kale.best_value": trial.best, "kale.best_step": trial.best_step}
    value = None
    if trial.state == "completed" and trial.best is not None:
        state, value = TrialState.COMPLETE, trial.best
    elif trial.state == "completed":
        state = TrialState.FAIL
        attrs["kale.note"] = f"completed without a finite value of {metric!r}"
    elif trial.state in ("pruned", "stopped"):
        state = TrialState.PRUNED
        last = steps[max(steps)] if steps else None
        value = last if last is not None and math.isfinite(last) else None
    elif trial.state == "failed":
        state = TrialState.FAIL
    elif trial.state == "pending":
        state = TrialState.WAITING
    else:
        state = TrialState.RUNNING
    start = trial.started or trial.ended or data.definition.get("created")
    finished = state.is_finished()
    return FrozenTrial(
        number=trial.number, state=state, value=value,
        datetime_start=None if state == TrialState.WAITING else
        _time(start) or datetime.datetime.now(),
        datetime_complete=(_time(trial.ended) or _time(start) or datetime.datetime.now())
        if finished else None,
        params={k: scalar(v) for k, v in trial.flat.items()},
        distributions={k: _distribution(space[k]) for k in trial.flat},
        user_attrs={k: v for k, v in attrs.items() if v is not None}, system_attrs={},
        intermediate_values=steps, trial_id=trial.number)


def write(data: SearchData, location: str, *, study_name: str) -> Any:
    """Write ``data`` as study ``study_name`` (replacing one of that name); return it."""
    if not data.metric or data.mode not in ("min", "max"):
        raise ConfigError(
            f"export(to='optuna'): {data.name!r} is a {data.kind} without an objective "
            f"(metric={data.metric!r}, mode={data.mode!r}) and an Optuna study needs one; "
            "export it to 'tensorboard', 'mlflow', 'parquet' or 'csv' instead.")
    optuna = require("optuna", target="optuna", package="optuna")
    storage = open_storage(location)
    if study_name in optuna.study.get_all_study_names(storage):
        optuna.delete_study(study_name=study_name, storage=storage)
    study = optuna.create_study(storage=storage, study_name=study_name,
                                direction="maximize" if data.mode == "max" else "minimize")
    best = data.best
    for key, value in {"kale.search": data.name, "kale.kind": data.kind,
                       "kale.store": data.store, "kale.metric": data.metric,
                       "kale.mode": data.mode, "kale.state": data.state,
                       "kale.best_trial": None if best is None else best.number,
                       "kale.best_value": None if best is None else best.best,
                       "kale.definition": data.definition}.items():
        if value is not None:
            study.set_user_attr(key, value)
    space = domains(data.definition, data.trials)
    study.add_trials([_frozen(data, t, space) for t in data.trials])
    return study
